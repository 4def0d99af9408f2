"""The Compare tab: run configurations in columns, from the very same latents.

The user adds a column from the current configuration (the control panel's), edits a
column's solver and steps in the table or replaces it with the current configuration,
removes columns, and runs them all on a worker thread (one after another: they share
the denoiser). One step control moves every column, by step index or by noise level σ
(so runs with different step counts line up). "Reference" runs the RK45 reference
through every column's σ's; each column then shows its error, a difference picture,
and the table fills in. The lower tabs overlay σ, trajectories, the error along the
run and an error-vs-NFE sweep, one colour per solver everywhere. Exports go through
:mod:`explorer.export.comparison`, exactly as ``diffusion-explorer compare`` writes them.

The comparison runs on its own copy of the denoiser, so the Run tab may sample at the
same time without either run changing the other's device or dtype.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget,
    QListWidgetItem, QMenu, QProgressBar, QPushButton, QSlider, QSpinBox, QSplitter, QTableWidget,
    QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget,
)

from explorer.core.compare import (
    ColumnRun, Comparison, ComparisonResult, CompareProgress, absorb, adaptive_sigmas, column_error, column_label, comparison_events,
    data_space, index_at_sigma, index_at_step, match_sigma, reference_events, shared_noise, sigma_axis, solver_color,
)
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.plan import predicted_nfe
from explorer.core.solvers import SOLVERS
from explorer.core.sweep import SweepProgress, SweepResult, parse_budgets, sweep_events
from explorer.export.grids import difference_cells, difference_limit, points_extent
from explorer.export.images import grid_shape, tile, to_uint8
from explorer.export.options import ExportOptions, read_document, write_document
from explorer.export.steps import state_picture
from explorer.ui.compare_plots import ErrorOverlay, SigmaOverlay, SweepPlot, TrajectoryOverlay
from explorer.ui.session import Session
from explorer.ui.worker import GeneratorWorker

MAX_TILES = 16  # samples drawn per column
VIEWS = {"x0": "x₀ estimate", "xt": "noisy xₜ", "diff": "difference from reference"}
DEFAULT_SWEEP = ("heun", "dpm-solver-3", "dpm-solver++2m")
SWEEP_BATCH = 16  # enough samples for a steady RMSE, few enough to keep the sweep quick
TABLE_HEAD = ["", "solver", "steps", "NFE", "time s", "RMSE vs ref"]


# --------------------------------------------------------------------------- pictures (no Qt)
def image_mosaic(picture: torch.Tensor, data_range: tuple[float, float]) -> np.ndarray:
    """The first samples of ``[B, C, H, W]`` as one uint8 mosaic (fixed levels)."""
    frames = to_uint8(picture[:MAX_TILES], data_range)
    return tile(frames, grid_shape(len(frames))[1], pad=1)


def difference_mosaic(diff: torch.Tensor, limit: float) -> np.ndarray:
    cells = [np.asarray(c) for c in difference_cells(diff[:MAX_TILES], limit)]
    frames = np.stack(cells)
    return tile(frames, grid_shape(len(frames))[1], pad=1)


def state_difference(run: ColumnRun, reference: ColumnRun, i: int) -> Optional[torch.Tensor]:
    """Column state i minus the reference's state at the same σ (data space), or None."""
    j = match_sigma(reference.trajectory.sigma, float(run.trajectory.sigma[i]))
    if j is None:
        return None
    return data_space(run.trajectory)[i] - data_space(reference.trajectory)[j]


# --------------------------------------------------------------------------- one column's picture
class ColumnPanel(QWidget):
    """One column: a title (solver, steps, NFE, σ and error of the shown state) and its picture."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.title.setAlignment(Qt.AlignCenter)
        self.title.setWordWrap(True)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(200, 200)
        self.box = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.image = pg.ImageItem()
        self.box.addItem(self.image)
        self.links = pg.PlotCurveItem(pen=pg.mkPen(170, 170, 170, 200))
        self.ref_dots = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(0, 0, 0, 220))
        self.dots = pg.ScatterPlotItem(size=4, pen=None)
        for item in (self.links, self.ref_dots, self.dots):
            self.box.addItem(item)
        self._shape: Optional[tuple[int, ...]] = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.graphics, 1)

    def set_title(self, text: str, color: str) -> None:
        self.title.setText(text)
        self.title.setStyleSheet(f"QLabel {{ border-top: 4px solid {color}; padding-top: 2px; }}")

    def show_image(self, mosaic: Optional[np.ndarray]) -> None:
        self.dots.setData([], [])
        self.ref_dots.setData([], [])
        self.links.setData([], [])
        if mosaic is None:
            self.image.clear()
            return
        img = mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic
        self.box.invertY(True)
        self.image.setImage(img, levels=(0, 255), autoLevels=False)
        if img.shape != self._shape:
            self._shape = img.shape
            self.box.autoRange(padding=0.01)

    def show_points(self, points: np.ndarray, color: str, extent: tuple[float, float, float, float],
                    reference: Optional[np.ndarray] = None) -> None:
        """2-D samples in the column's colour; with ``reference`` also the reference points joined to them."""
        self.image.clear()
        self._shape = None
        self.box.invertY(False)
        ok = np.isfinite(points).all(1)
        self.dots.setData(points[ok, 0], points[ok, 1], brush=pg.mkBrush(color))
        if reference is None:
            self.ref_dots.setData([], [])
            self.links.setData([], [])
        else:
            pairs = np.stack([points, reference], 1).reshape(-1, 2)
            self.ref_dots.setData(reference[:, 0], reference[:, 1])
            self.links.setData(pairs[:, 0], pairs[:, 1], connect="pairs")
        x0, x1, y0, y1 = extent
        self.box.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0.0)


# --------------------------------------------------------------------------- the tab
class CompareView(QWidget):
    """The comparison tab (see the module docstring).

    Signals:
        runEnded(str): "finished", "failed" or "cancelled" after a run of columns, the
            reference, a sweep or an export (for scripts and tests).
    """

    runEnded = Signal(str)

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.columns: list[RunConfig] = []
        self.runs: list[Optional[ColumnRun]] = []
        self.reference: Optional[ColumnRun] = None
        self.sweep: Optional[SweepResult] = None
        self.seed, self.batch = session.config.seed, session.config.batch
        self.worker = GeneratorWorker(self, rate_hz=15)
        self._job = ""
        self._pending: Any = None
        self._own: Optional[tuple[int, Denoiser]] = None
        self._axis: list[float] = []
        self._build()
        self.worker.frameReady.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        session.denoiserChanged.connect(self._denoiser_changed)
        self._refresh()

    # ------------------------------------------------------------------ building
    def _button(self, text: str, slot: Callable[[], Any], tip: str = "") -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda *_: slot())
        return button

    def _build(self) -> None:
        self.add_button = self._button("Add current", self.add_current, "Add a column with the control panel's configuration")
        self.replace_button = self._button("Replace", self.replace_selected, "Replace the selected column with the current configuration")
        self.remove_button = self._button("Remove", self.remove_selected, "Remove the selected column")
        self.grid_button = self._button("Add grid…", self._pick_grid,
                                        "Add a column: the current configuration on a σ grid file (columns differing by schedule)")
        self.run_button = self._button("Run all", self.run_all, "Run every column from the same latents")
        self.reference_button = self._button("Reference", self.run_reference,
                                             "Run the RK45 reference (float64) through every column's σ's, for the errors")
        self.cancel_button = self._button("Cancel", self.cancel, "Stop after the current step")
        self.seed_box, self.batch_box = QSpinBox(), QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.batch_box.setRange(1, 65536)
        self.seed_box.setValue(self.seed)
        self.batch_box.setValue(self.batch)
        self.seed_box.valueChanged.connect(self._latents_changed)
        self.batch_box.valueChanged.connect(self._latents_changed)
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.InstantPopup)
        self.export_button.setMenu(self._export_menu())
        top = QHBoxLayout()
        for w in (self.add_button, self.grid_button, self.replace_button, self.remove_button, self.run_button, self.reference_button,
                  self.cancel_button):
            top.addWidget(w)
        top.addWidget(QLabel("seed"))
        top.addWidget(self.seed_box)
        top.addWidget(QLabel("batch"))
        top.addWidget(self.batch_box)
        top.addStretch(1)
        top.addWidget(self.export_button)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.table = QTableWidget(0, len(TABLE_HEAD))
        self.table.setHorizontalHeaderLabels(TABLE_HEAD)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMaximumHeight(165)  # five columns without scrolling
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.view_box = QComboBox()
        for key, text in VIEWS.items():
            self.view_box.addItem(text, key)
        self.view_box.currentIndexChanged.connect(lambda *_: self._show_step())
        self.sync_box = QComboBox()
        self.sync_box.addItem("step index", "step")
        self.sync_box.addItem("noise level σ", "sigma")
        self.sync_box.currentIndexChanged.connect(lambda *_: self._sync_changed())
        self.slider = QSlider(Qt.Horizontal)
        self.slider.valueChanged.connect(lambda *_: self._show_step())
        self.step_label = QLabel()
        self.step_label.setMinimumWidth(150)
        sync = QHBoxLayout()
        sync.addWidget(QLabel("show"))
        sync.addWidget(self.view_box)
        sync.addWidget(QLabel("sync by"))
        sync.addWidget(self.sync_box)
        sync.addWidget(self.slider, 1)
        sync.addWidget(self.step_label)
        self.panels_row = QHBoxLayout()
        self.panels: list[ColumnPanel] = []
        holder = QWidget()
        holder.setLayout(self.panels_row)
        self.empty = QLabel("Add columns from the control panel's configuration, then Run all.")
        self.empty.setAlignment(Qt.AlignCenter)
        self.panels_row.addWidget(self.empty)
        upper = QWidget()
        up = QVBoxLayout(upper)
        up.setContentsMargins(0, 0, 0, 0)
        up.addLayout(sync)
        up.addWidget(holder, 1)
        self.sigma_plot, self.path_plot, self.error_plot = SigmaOverlay(), TrajectoryOverlay(), ErrorOverlay()
        self.sweep_plot = SweepPlot()
        self.plots = QTabWidget()
        self.plots.addTab(self.sigma_plot, "σ per step")
        self.plots.addTab(self.path_plot, "Trajectories")
        self.plots.addTab(self.error_plot, "Error along the run")
        self.plots.addTab(self._sweep_tab(), "Error vs NFE")
        split = QSplitter(Qt.Vertical)
        split.addWidget(upper)
        split.addWidget(self.plots)
        split.setSizes([520, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.message, 2)
        layout.addLayout(row)
        layout.addWidget(split, 1)

    def _sweep_tab(self) -> QWidget:
        self.sweep_solvers = QListWidget()
        self.sweep_solvers.setMaximumWidth(210)
        for name, info in SOLVERS.items():
            if info.adaptive:
                continue
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in DEFAULT_SWEEP else Qt.Unchecked)
            item.setForeground(pg.mkColor(solver_color(name)))
            self.sweep_solvers.addItem(item)
        self.sweep_budgets = QLineEdit("5,10,20,50")
        self.sweep_budgets.setToolTip("NFE budgets, comma-separated")
        self.sweep_button = self._button("Run sweep", self.run_sweep,
                                         "Run each checked solver at each NFE (final σ_min, float64) and fit its order")
        side = QVBoxLayout()
        side.addWidget(QLabel("solvers"))
        side.addWidget(self.sweep_solvers, 1)
        side.addWidget(QLabel("NFE budgets"))
        side.addWidget(self.sweep_budgets)
        side.addWidget(self.sweep_button)
        tab = QWidget()
        layout = QHBoxLayout(tab)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(side)
        layout.addWidget(self.sweep_plot, 1)
        return tab

    def _export_menu(self) -> QMenu:
        menu = QMenu(self)
        self.export_all_action = menu.addAction("Everything to a folder…", self.export_all)
        self.export_config_action = menu.addAction("Comparison file (JSON)…", self.export_config)
        self.export_sweep_action = menu.addAction("Error-vs-NFE table and plot…", self.export_sweep)
        menu.addSeparator()
        menu.addAction("Load a comparison file…", self.load_config)
        menu.addSeparator()
        self.downscale_action = menu.addAction("Downscale grids too large for one image")
        self.downscale_action.setCheckable(True)
        self.xt_action = menu.addAction("Film strips and animations show xₜ (else x₀)")
        self.xt_action.setCheckable(True)
        return menu

    # ------------------------------------------------------------------ columns
    def comparison(self) -> Optional[Comparison]:
        """The comparison as it stands (None without columns)."""
        if not self.columns:
            return None
        return Comparison(self.session.denoiser_spec, tuple(self.columns), seed=self.seed, batch=self.batch)

    def add_column(self, config: RunConfig) -> None:
        """Add a column (the comparison's seed and batch replace the config's)."""
        if not self.columns:
            self.seed, self.batch = config.seed, config.batch
            self._set_latent_boxes()
        self.columns.append(config.replace(seed=self.seed, batch=self.batch))
        self.runs.append(None)
        self.reference = None
        self._refresh()

    def add_current(self) -> None:
        self.add_column(self.session.config)

    def _pick_grid(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A σ grid for the new column", "", "Grids (*.json *.npy)")
        if path:
            self.add_grid_column(path)

    def add_grid_column(self, path: str | Path) -> bool:
        """A column with the current configuration on the grid of ``path`` (presets' settings included)."""
        from explorer.core.grids import grid_config_fields, load_grid

        try:
            config = self.session.config.replace(**grid_config_fields(load_grid(path)))
        except (ValueError, FileNotFoundError) as err:
            self.say(str(err), error=True)
            return False
        self.add_column(config)
        return True

    def set_column(self, index: int, config: RunConfig) -> None:
        self.columns[index] = config.replace(seed=self.seed, batch=self.batch)
        self.runs[index] = None
        self.reference = None
        self._refresh()

    def replace_selected(self) -> None:
        index = self._selected()
        if index is not None:
            self.set_column(index, self.session.config)

    def remove_column(self, index: int) -> None:
        del self.columns[index]
        del self.runs[index]
        self.reference = None
        self._refresh()

    def remove_selected(self) -> None:
        index = self._selected()
        if index is not None:
            self.remove_column(index)

    def _selected(self) -> Optional[int]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return rows[0].row() if rows else None

    def _edit(self, index: int, **changes: Any) -> None:
        """An edit made in the table (solver or steps); impossible ones are undone with a message."""
        try:
            config = self.columns[index].replace(**changes)
        except ValueError as err:
            self.say(str(err), error=True)
            self._fill_table()
            return
        self.set_column(index, config)
        self.table.selectRow(index)

    def _latents_changed(self) -> None:
        seed, batch = self.seed_box.value(), self.batch_box.value()
        if (seed, batch) == (self.seed, self.batch):
            return
        self.seed, self.batch = seed, batch
        self.columns = [c.replace(seed=seed, batch=batch) for c in self.columns]
        self._drop_results()

    def _set_latent_boxes(self) -> None:
        for box, value in ((self.seed_box, self.seed), (self.batch_box, self.batch)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def _drop_results(self) -> None:
        self.runs = [None] * len(self.columns)
        self.reference = None
        self._refresh()

    def _denoiser_changed(self, _denoiser: Denoiser) -> None:
        """A new denoiser: the columns stay, their runs (of the old one) go."""
        if self.worker.is_running():
            self.worker.cancel()
        self._own = None
        self._drop_results()

    # ------------------------------------------------------------------ running
    def _denoiser(self) -> Denoiser:
        """The comparison's own copy of the session's denoiser (made once per denoiser)."""
        den = self.session.denoiser
        if self._own is None or self._own[0] != id(den):
            self._own = (id(den), copy.deepcopy(den))
        return self._own[1]

    def _start(self, job: str, source: Callable[[], Iterator[Any]], observe: Callable[[Any], None],
               finish: Callable[[], Any], what: str) -> bool:
        if self.worker.is_running():
            self.say("Wait for the current run to finish, or cancel it.", error=True)
            return False
        self._job = job
        self.progress.setRange(0, 0)
        self.say(what)
        self.worker.start(source, observe=observe, convert=_progress_text, finish=finish)
        self._update_buttons()
        return True

    def run_all(self, columns: Optional[list[int]] = None) -> bool:
        """Run every column (or the listed ones) on the worker; the window stays responsive."""
        return self._comparison_job("columns", lambda den, cmp: comparison_events(den, cmp, False, True, columns),
                                    f"Running the column(s) from seed {self.seed}…")

    def run_reference(self) -> bool:
        """One click: the high-accuracy reference run for the same latents."""
        visited = [s for r in self.runs if r is not None for s in adaptive_sigmas(r)]
        return self._comparison_job("reference", lambda den, cmp: reference_events(den, cmp, None, visited),
                                    "Running the reference (RK45, float64) through every column's σ…")

    def _comparison_job(self, job: str, events: Callable[[Denoiser, Comparison], Iterator[CompareProgress]], what: str) -> bool:
        """Start columns or the reference; finished runs collect in a partial result kept even on cancel."""
        comparison = self.comparison()
        if comparison is None:
            self.say("Add a column first.", error=True)
            return False
        denoiser = self._denoiser()
        partial = ComparisonResult(comparison, torch.empty(0))
        self._pending = partial
        return self._start(job, lambda: events(denoiser, comparison), lambda item: absorb(partial, item),
                           lambda: partial, what)

    def run_sweep(self) -> bool:
        """Error against NFE for the checked solvers, in the background."""
        solvers = [self.sweep_solvers.item(i).text() for i in range(self.sweep_solvers.count())
                   if self.sweep_solvers.item(i).checkState() == Qt.Checked]
        try:
            if not solvers:
                raise ValueError("Check at least one solver for the sweep.")
            budgets = parse_budgets(self.sweep_budgets.text())
            template = self.columns[0] if self.columns else self.session.config
            base = template.replace(final="sigma_min", dtype="float64", batch=min(self.batch, SWEEP_BATCH),
                                    seed=self.seed, steps=None, nfe=budgets[-1], solver=solvers[0], churn=0.0)
        except ValueError as err:
            self.say(str(err), error=True)
            return False
        denoiser = self._denoiser()
        holder: dict[str, Any] = {}

        def keep(item: SweepProgress) -> None:
            if item.result is not None:
                holder["result"] = item.result

        self.plots.setCurrentWidget(self.plots.widget(3))
        return self._start("sweep", lambda: sweep_events(denoiser, base, solvers, budgets), keep,
                           lambda: holder.get("result"), f"Sweeping {', '.join(solvers)} over NFE {budgets}…")

    def cancel(self) -> None:
        if self.worker.is_running():
            self.worker.cancel()
            self.say("Cancelling…")

    def _on_progress(self, text: str) -> None:
        self.progress.setFormat(text)

    def _merge(self, partial: Any) -> None:
        """Keep what a run of columns or the reference finished (also after a cancel)."""
        if not isinstance(partial, ComparisonResult) or partial.comparison != self.comparison():
            return
        for k, run in enumerate(partial.runs):
            if run is not None:
                self.runs[k] = run
        if partial.reference is not None:
            self.reference = partial.reference

    def _on_finished(self, result: Any) -> None:
        job, self._job = self._job, ""
        self._end_progress()
        if job in ("columns", "reference"):
            self._merge(result)
            self.say(self._summary())
            self._refresh()
        elif job == "sweep" and result is not None:
            self.sweep = result
            self.sweep_plot.show_sweep(result)
            orders = ", ".join(f"{s} {o:.2f}" for s, o in result.orders().items() if math.isfinite(o))
            self.say(f"Sweep done against the {result.reference_kind}; fitted orders: {orders}.")
        elif job == "export":
            self.say(result)
        self._update_buttons()
        self.runEnded.emit("finished")

    def _on_failed(self, message: str) -> None:
        job, self._job, pending = self._job, "", self._pending
        self._end_progress()
        if job in ("columns", "reference"):
            self._merge(pending)
            self._refresh()
        self.say(f"Failed: {message}", error=True)
        self._update_buttons()
        self.runEnded.emit("failed")

    def _on_cancelled(self) -> None:
        job, self._job, pending = self._job, "", self._pending
        self._end_progress()
        if job in ("columns", "reference"):
            self._merge(pending)
            self._refresh()
        self.say("Cancelled; finished columns are kept.")
        self._update_buttons()
        self.runEnded.emit("cancelled")

    def _end_progress(self) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("")
        self._pending = None

    def _summary(self) -> str:
        done = sum(r is not None for r in self.runs)
        ref = "; reference ready" if self.reference is not None else "; press Reference for the errors"
        return f"{done} of {len(self.columns)} columns done{ref}."

    def say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("QLabel { color: #a01010; }" if error else "")

    # ------------------------------------------------------------------ showing
    def _labels(self) -> list[str]:
        return [f"{k + 1}. " + column_label(c, r.trajectory if r else None) for k, (c, r) in enumerate(zip(self.columns, self.runs))]

    def _errors(self) -> list:
        if self.reference is None:
            return [None] * len(self.runs)
        return [None if r is None else column_error(r.trajectory, self.reference.trajectory) for r in self.runs]

    def _refresh(self) -> None:
        """Redraw everything after the columns or their results changed."""
        self._fill_table()
        self._rebuild_panels()
        trajectories = [r.trajectory for r in self.runs if r is not None]
        self._axis = sigma_axis(trajectories) if trajectories else []
        self._sync_changed()
        labels = self._labels()
        self.sigma_plot.show_runs(self.runs, labels)
        self.path_plot.show_runs(self.runs, labels, self.reference)
        self.error_plot.show_errors(self.runs, labels, self._errors())
        self._update_buttons()

    def _fill_table(self) -> None:
        self.table.setRowCount(len(self.columns))
        den = self.session.denoiser
        errors = self._errors()
        for k, (config, run) in enumerate(zip(self.columns, self.runs)):
            swatch = QTableWidgetItem(str(k + 1))
            swatch.setBackground(pg.mkColor(solver_color(config.solver)))
            swatch.setForeground(pg.mkColor("w"))
            self.table.setItem(k, 0, swatch)
            self.table.setCellWidget(k, 1, self._solver_editor(k, config))
            self.table.setCellWidget(k, 2, self._steps_editor(k, config, run))
            try:
                nfe = run.trajectory.nfe if run else predicted_nfe(config, (den.sigma_min, den.sigma_max))
            except ValueError:
                nfe = None
            cells = ["—" if nfe is None else str(nfe), f"{run.seconds:.3f}" if run and math.isfinite(run.seconds) else "",
                     f"{errors[k].final:.4e}" if errors[k] is not None else ""]
            for q, text in enumerate(cells, start=3):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(k, q, item)

    def _solver_editor(self, k: int, config: RunConfig) -> QComboBox:
        box = QComboBox()
        box.addItems([n for n in SOLVERS if n != "reference"])
        box.setCurrentText(config.solver)
        box.currentTextChanged.connect(lambda name, k=k: self._edit(k, solver=name))
        return box

    def _steps_editor(self, k: int, config: RunConfig, run: Optional[ColumnRun]) -> QSpinBox:
        box = QSpinBox()
        box.setRange(1, 10000)
        box.setKeyboardTracking(False)
        box.setValue(config.steps or (run.trajectory.num_steps if run else 18))
        box.setToolTip("steps (an NFE budget in the column is replaced by this step count)")
        box.valueChanged.connect(lambda n, k=k: self._edit(k, steps=int(n), nfe=None, **_NO_GRID))
        return box

    def _rebuild_panels(self) -> None:
        while len(self.panels) > len(self.columns):
            panel = self.panels.pop()
            self.panels_row.removeWidget(panel)
            panel.deleteLater()
        while len(self.panels) < len(self.columns):
            panel = ColumnPanel()
            self.panels.append(panel)
            self.panels_row.addWidget(panel, 1)
        self.empty.setVisible(not self.columns)

    def _sync_changed(self) -> None:
        by_sigma = self.sync_box.currentData() == "sigma"
        steps = max((r.trajectory.num_steps for r in self.runs if r is not None), default=0)
        top = max(0, len(self._axis) - 1) if by_sigma else steps
        self.slider.blockSignals(True)
        self.slider.setRange(0, top)
        self.slider.setValue(top)
        self.slider.blockSignals(False)
        self._show_step()

    def shown_indices(self) -> list[Optional[int]]:
        """The state each column shows for the slider's position (None for columns not run)."""
        pos = self.slider.value()
        if self.sync_box.currentData() == "sigma":
            sigma = self._axis[min(pos, len(self._axis) - 1)] if self._axis else 0.0
            return [None if r is None else index_at_sigma(r.trajectory, sigma) for r in self.runs]
        return [None if r is None else index_at_step(r.trajectory, pos) for r in self.runs]

    def _show_step(self) -> None:
        indices = self.shown_indices()
        by_sigma = self.sync_box.currentData() == "sigma"
        pos = self.slider.value()
        sigma = self._axis[min(pos, len(self._axis) - 1)] if by_sigma and self._axis else None
        self.step_label.setText(f"σ = {sigma:.4g}" if sigma is not None else f"step {pos}")
        self.sigma_plot.mark(pos, sigma)
        self.error_plot.mark(sigma)
        view = self.view_box.currentData()
        if view == "diff" and self.reference is None:
            self.say("Press Reference first to see differences.", error=False)
        pictures = self._pictures(indices, view)
        errors = self._errors()
        if tuple(self.session.denoiser.shape) == (2,):
            self._show_points(indices, pictures, errors, view)
            return
        limit = difference_limit([p for p in pictures if p is not None]) if view == "diff" else 1.0
        rng = tuple(float(v) for v in self.session.denoiser.data_range)
        for k, panel in enumerate(self.panels):
            if self._titled(k, panel, indices[k], errors[k]):
                picture = pictures[k]
                mosaic = None if picture is None else difference_mosaic(picture, limit) if view == "diff" else image_mosaic(picture, rng)
                panel.show_image(mosaic)

    def _show_points(self, indices: list[Optional[int]], pictures: list[Optional[torch.Tensor]], errors: list, view: str) -> None:
        """2-D columns on one shared extent; in the difference view each point is joined to its reference point."""
        shown: list[Optional[tuple[np.ndarray, Optional[np.ndarray]]]] = []
        for run, i, picture in zip(self.runs, indices, pictures):
            if run is None or i is None or picture is None:
                shown.append(None)
            elif view == "diff":
                here = data_space(run.trajectory)[i]
                shown.append((here.numpy(), (here - picture).numpy()))  # the reference = state − difference
            else:
                shown.append((picture.double().numpy(), None))
        sets = [torch.from_numpy(a) for pair in shown if pair is not None for a in pair if a is not None]
        extent = points_extent(*sets) if sets else (-1.0, 1.0, -1.0, 1.0)
        for k, panel in enumerate(self.panels):
            if self._titled(k, panel, indices[k], errors[k]):
                if shown[k] is None:
                    panel.show_image(None)
                else:
                    panel.show_points(shown[k][0], solver_color(self.columns[k].solver), extent, shown[k][1])

    def _pictures(self, indices: list[Optional[int]], view: str) -> list[Optional[torch.Tensor]]:
        rng = tuple(float(v) for v in self.session.denoiser.data_range)
        out: list[Optional[torch.Tensor]] = []
        for run, i in zip(self.runs, indices):
            if run is None or i is None:
                out.append(None)
            elif view == "diff":
                out.append(None if self.reference is None else state_difference(run, self.reference, i))
            else:
                out.append(state_picture(run.trajectory, i, view, rng))
        return out

    def _titled(self, k: int, panel: ColumnPanel, i: Optional[int], err: Any) -> bool:
        """Set column k's title for state i; False (and a blank panel) when it has not run."""
        config, run = self.columns[k], self.runs[k]
        color = solver_color(config.solver)
        if run is None or i is None:
            panel.set_title(f"{k + 1}. {column_label(config)}\n(not run)", color)
            panel.show_image(None)
            return False
        tr = run.trajectory
        err_text = ""
        if err is not None and i < len(err.step) and math.isfinite(err.step[i]):
            err_text = f" · RMSE {err.step[i]:.2e}"
        panel.set_title(f"{k + 1}. {column_label(config, tr)}\nstep {i} · σ={float(tr.sigma[i]):.3g}{err_text}", color)
        return True

    def _update_buttons(self) -> None:
        busy = self.worker.is_running()
        has = bool(self.columns)
        selected = self._selected() is not None
        for button, on in ((self.add_button, not busy), (self.replace_button, not busy and selected),
                           (self.remove_button, not busy and selected), (self.run_button, not busy and has),
                           (self.reference_button, not busy and has), (self.cancel_button, busy),
                           (self.sweep_button, not busy), (self.export_button, not busy)):
            button.setEnabled(on)
        for widget in (self.seed_box, self.batch_box, self.table):
            widget.setEnabled(not busy)
        done = has and all(r is not None for r in self.runs)
        self.export_all_action.setEnabled(done)
        self.export_config_action.setEnabled(has)
        self.export_sweep_action.setEnabled(self.sweep is not None)

    # ------------------------------------------------------------------ exports
    def result(self) -> Optional[ComparisonResult]:
        """The finished comparison (every column run), or None."""
        comparison = self.comparison()
        if comparison is None or any(r is None for r in self.runs):
            return None
        noise = shared_noise(self.session.denoiser, self.seed, self.batch)
        return ComparisonResult(comparison, noise, list(self.runs), self.reference)

    def export_options(self) -> ExportOptions:
        space = "xt" if self.xt_action.isChecked() else "x0"
        return ExportOptions(downscale=self.downscale_action.isChecked(), strip_space=space, animation_space=space)

    def export_to(self, folder: str | Path) -> bool:
        """Every export of the comparison into ``folder`` (on the worker thread)."""
        result = self.result()
        if result is None:
            self.say("Run every column before exporting.", error=True)
            return False
        options, rng = self.export_options(), tuple(float(v) for v in self.session.denoiser.data_range)

        def job() -> Iterator[str]:
            from explorer.export.comparison import export_comparison

            report = export_comparison(result, folder, rng, options)
            notes = " ".join(report.notes)
            yield f"Wrote {len(report.paths)} files to {folder}. {notes}".strip()

        holder: dict[str, str] = {}
        return self._start("export", job, lambda text: holder.update(text=text), lambda: holder.get("text", ""),
                           f"Exporting to {folder}…")

    def export_all(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the comparison into a folder")
        if folder:
            self.export_to(folder)

    def export_config(self) -> None:
        comparison = self.comparison()
        if comparison is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save the comparison file", "comparison.json", "JSON (*.json)")
        if path:
            self._guard(lambda: self._write_config(comparison, path))

    def _write_config(self, comparison: Comparison, path: str) -> None:
        write_document(comparison, self.export_options(), path)
        self.say(f"Saved {path}; reproduce with: diffusion-explorer compare --config {path} --out DIR")

    def export_sweep(self) -> None:
        if self.sweep is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Save the error-vs-NFE table and plot into a folder")
        if folder:
            self._guard(lambda: self.save_sweep(folder))

    def save_sweep(self, folder: str | Path) -> list[Path]:
        """sweep.csv, sweep.png and sweep.svg (the same files as ``diffusion-explorer sweep``)."""
        from explorer.export.figures import save_plot, sweep_figure
        from explorer.export.files import output_dir
        from explorer.export.tables import save_sweep_table

        out = output_dir(folder)
        paths = [save_sweep_table(self.sweep.rows(), out / "sweep.csv")]
        for fmt in ("png", "svg"):
            paths.append(save_plot(sweep_figure(self.sweep, f"{self.session.denoiser_spec}: error against NFE"), out / f"sweep.{fmt}"))
        self.say(f"Saved {', '.join(p.name for p in paths)} in {out}.")
        return paths

    def load_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a comparison file", "", "JSON (*.json)")
        if path:
            self._guard(lambda: self.load_document(path))

    def load_document(self, path: str | Path) -> None:
        """Take the columns, seed and batch of a comparison file (its model must be the current one)."""
        comparison, _options = read_document(path)
        if comparison.model != self.session.denoiser_spec:
            raise ValueError(f"The file compares {comparison.model!r}; open that denoiser first (now {self.session.denoiser_spec!r}).")
        self.seed, self.batch = comparison.seed, comparison.batch
        self._set_latent_boxes()
        self.columns = list(comparison.columns)
        self._drop_results()

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except ValueError as err:
            self.say(str(err), error=True)


_NO_GRID = dict(sigmas=None, timesteps=None, orders=None, init_sigma=None, schedule_label=None)  # a step count replaces a grid


def _progress_text(item: Any) -> str:
    """A short line for the progress bar, made on the worker thread."""
    if isinstance(item, CompareProgress) and item.event is not None:
        ev = item.event
        who = "reference" if item.is_reference else f"column {item.column + 1}/{item.total_columns}"
        total = f"/{ev.total_steps}" if ev.total_steps else ""
        return f"{who}: step {ev.index}{total}, NFE {ev.nfe}, σ={ev.sigma:.3g}"
    if isinstance(item, SweepProgress):
        point = f": {item.point.solver} NFE {item.point.nfe}" if item.point else f": {item.message}"
        return f"sweep run {item.done}/{item.total}{point}"
    return str(item) if isinstance(item, str) else ""
