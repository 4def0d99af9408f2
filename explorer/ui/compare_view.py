"""The Compare tab: run configurations in columns, from the very same latents.

The tab is a composition of small views over one
:class:`~explorer.session.comparison.ComparisonSession` (through its Qt adapter
:class:`~explorer.ui.compare_model.ComparisonModel`): the columns table
(:mod:`explorer.ui.compare_table`), the column panels with the synced step control
(:mod:`explorer.ui.compare_panels`), the overlay plots and the sweep panel
(:mod:`explorer.ui.compare_plots`), and this module's toolbar and export menu.
Background work is a job object (:mod:`explorer.ui.compare_jobs`) that prepares
errors and frames on the worker thread; the GUI thread only commits and draws, and what
a result changes beyond its column's panel is drawn in later short slots (a
:class:`~explorer.ui.deferred.Deferred` queue), each within the 16 ms a slot may take.

The comparison runs on its own copy of the denoiser, so the Run tab may sample at the
same time without either run changing the other's device or dtype.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QSplitter,
    QToolBar, QToolButton, QVBoxLayout, QWidget,
)

from explorer.core.compare import MAX_COLUMNS, ColumnRun, Comparison, ComparisonResult
from explorer.core.config import RunConfig
from explorer.core.solvers.options import REFERENCE_RTOL
from explorer.core.denoiser import Denoiser
from explorer.core.sweep import parse_budgets
from explorer.session.comparison import ComparisonSession
from explorer.session.status import RunStatus, starting
from explorer.ui.compare_exports import ExportMenu
from explorer.ui.compare_jobs import ColumnsJob, Job, ReferenceJob, SweepJob, adaptive_visited
from explorer.ui.compare_model import ComparisonModel
from explorer.ui.compare_panels import VIEWS, ColumnPanel, PanelsView
from explorer.ui.compare_plots import OverlayTabs
from explorer.ui.compare_grid import GridDialog, grid_columns, parse_rhos
from explorer.ui.deferred import Deferred
from explorer.ui.session import Session
from explorer.ui.worker import GeneratorWorker

__all__ = ["VIEWS", "ColumnPanel", "CompareView"]

SWEEP_BATCH = 16  # enough samples for a steady RMSE, few enough to keep the sweep quick
TOLERANCES = (1e-4, 1e-5, 1e-6, 1e-7, REFERENCE_RTOL, 1e-10)


class CompareView(QWidget):
    """The comparison tab (see the module docstring).

    Signals:
        runEnded(str): "finished", "failed" or "cancelled" after a run of columns, the
            reference, a sweep or an export (for scripts and tests), once what it changed
            is drawn.
    """

    runEnded = Signal(str)

    def __init__(self, session: Session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        den = session.denoiser
        state = ComparisonSession(session.denoiser_spec, den.shape, tuple(float(v) for v in den.data_range),
                                  session.config.seed, session.config.batch)
        self.model = ComparisonModel(state, self)
        self.worker = GeneratorWorker(self, rate_hz=15)
        self.job: Optional[Job] = None
        self._own: Optional[tuple[int, Denoiser]] = None
        self.deferred = Deferred(self)  # drawing left for later slots; runEnded waits behind it
        self._build()
        self.worker.frameReady.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(lambda message: self._ended("failed", f"Failed: {message}", error=True))
        self.worker.cancelled.connect(lambda: self._ended("cancelled", "Cancelled; the finished columns are kept."))
        self.model.problem.connect(lambda text: self.say(text, error=True))
        self.model.columnsChanged.connect(self._update_buttons)
        self.model.resultsChanged.connect(lambda: self.say(self._summary()) if self.job is not None else None)
        self.model.statusChanged.connect(self._show_status)
        session.denoiserChanged.connect(self._denoiser_changed)
        self._update_buttons()

    # ------------------------------------------------------------------ state (read-only views of the session)
    @property
    def state(self) -> ComparisonSession:
        return self.model.session

    @property
    def columns(self) -> list[RunConfig]:
        return list(self.state.columns)

    @property
    def runs(self) -> list[Optional[ColumnRun]]:
        return self.state.runs

    @property
    def reference(self) -> Optional[ColumnRun]:
        return self.state.reference

    @property
    def sweep(self):  # noqa: ANN201 - Optional[SweepResult]
        return self.state.sweep

    @property
    def seed(self) -> int:
        return self.state.seed

    @property
    def batch(self) -> int:
        return self.state.batch

    @property
    def _axis(self) -> list[float]:
        return self.state.axis

    # ------------------------------------------------------------------ building
    def _button(self, text: str, slot: Callable[[], Any], tip: str = "") -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda *_: slot())
        return button

    def _build(self) -> None:
        self.add_button = self._button("Add", self.add_current, "Add a column with the control panel's configuration")
        self.grid_button = self._button("Grid…", self.open_grid, "Add a column for every solver × step count (× ρ)")
        self.replace_button = self._button("Replace", self.replace_selected, "Replace the selected column with the current configuration")
        self.remove_button = self._button("Remove", self.remove_selected, "Remove the selected column")
        self.sigmas_button = self._button("σ grid…", self._pick_sigmas,
                                          "Add a column: the current configuration on a σ grid file (columns differing by schedule)")
        self.run_button = self._button("Run all", self.run_all, "Run every column from the same latents")
        self.reference_button = self._button("Reference", self.run_reference,
                                             "Run the RK45 reference (float64) through every column's σ's, for the errors")
        self.cancel_button = self._button("Cancel", self.cancel, "Stop after the current step")
        self.rtol_box = QComboBox()
        for rtol in TOLERANCES:
            self.rtol_box.addItem(f"rtol {rtol:.0e}", rtol)
        self.rtol_box.setCurrentIndex(TOLERANCES.index(REFERENCE_RTOL))
        self.rtol_box.currentIndexChanged.connect(lambda *_: self.model.set_reference_rtol(float(self.rtol_box.currentData())))
        self.rtol_box.setToolTip("The reference's relative tolerance: each step down costs about 1.6× the NFE")
        self.seed_box, self.batch_box = QSpinBox(), QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.batch_box.setRange(1, 65536)
        self._set_latent_boxes()
        self.seed_box.valueChanged.connect(self._latents_changed)
        self.batch_box.valueChanged.connect(self._latents_changed)
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.InstantPopup)
        self.exports = ExportMenu(self)
        self.export_button.setMenu(self.exports)
        top = QToolBar()  # too narrow a window folds the rest behind a » button, never widens the window
        top.setObjectName("compare_toolbar")
        for w in (self.add_button, self.grid_button, self.sigmas_button, self.replace_button, self.remove_button, self.run_button,
                  self.reference_button, self.rtol_box, self.cancel_button, QLabel(" seed "), self.seed_box,
                  QLabel(" batch "), self.batch_box, self.export_button):
            top.addWidget(w)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        from explorer.ui.compare_table import ColumnsTable

        self.table = ColumnsTable(self.model, self._sigma_range)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.panels_view = PanelsView(self.model)
        self.plots = OverlayTabs(self.model, self.run_sweep, self.deferred)
        self.panels_view.stepShown.connect(self.plots.mark)
        # One splitter for the table, the panels and the plots: in a 1024×640 window a fixed table
        # above it left the panels' pictures 30 px tall; the pictures get the stretch, and the
        # table scrolls (or is dragged taller) past its first rows.
        self.split = QSplitter(Qt.Vertical)
        self.split.setObjectName("compare_split")
        for k, (widget, stretch) in enumerate(((self.table, 0), (self.panels_view, 3), (self.plots, 2))):
            self.split.addWidget(widget)
            self.split.setStretchFactor(k, stretch)
            self.split.setCollapsible(k, False)
        self.split.setSizes([self.table.maximumHeight(), 480, 320])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(top)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.message, 2)
        layout.addLayout(row)
        layout.addWidget(self.split, 1)

    # views' widgets, by the names scripts and tests use
    @property
    def panels(self) -> list[ColumnPanel]:
        return self.panels_view.panels

    @property
    def slider(self):  # noqa: ANN201
        return self.panels_view.slider

    @property
    def view_box(self) -> QComboBox:
        return self.panels_view.view_box

    @property
    def sync_box(self) -> QComboBox:
        return self.panels_view.sync_box

    @property
    def step_label(self) -> QLabel:
        return self.panels_view.step_label

    def shown_indices(self) -> list[Optional[int]]:
        return self.panels_view.shown_indices()

    def _sigma_range(self) -> tuple[float, float]:
        den = self.session.denoiser
        return (den.sigma_min, den.sigma_max)

    # ------------------------------------------------------------------ columns
    def comparison(self) -> Optional[Comparison]:
        """The comparison as it stands (None without columns)."""
        return self.state.comparison()

    def add_column(self, config: RunConfig) -> bool:
        """Add a column (the comparison's seed and batch replace the config's); a 17th is refused, visibly."""
        ok = self.model.add(config)
        self._set_latent_boxes()
        if ok:
            self.say(f"{len(self.columns)} column(s); Run all to run them.")
        return ok

    def add_current(self) -> bool:
        return self.add_column(self.session.config)

    def _pick_sigmas(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A σ grid for the new column", "", "Grids (*.json *.npy)")
        if path:
            self.add_grid_column(path)

    def add_grid_column(self, path: str | Path) -> bool:
        """A column with the current configuration on the σ grid of ``path`` (a preset's settings included)."""
        from explorer.core.grids import grid_config_fields, load_grid

        try:
            config = self.session.config.replace(**grid_config_fields(load_grid(path)))
        except (ValueError, FileNotFoundError) as err:
            self.say(str(err), error=True)
            return False
        return self.add_column(config)

    def add_grid(self, solvers: list[str], steps: list[int], rhos: str | Sequence[float] = ()) -> bool:
        """A column for every solver × step count × ρ, from the current configuration (all or none)."""
        try:
            rho_values = parse_rhos(rhos) if isinstance(rhos, str) else list(rhos)
            configs = grid_columns(self.session.config, solvers, steps, MAX_COLUMNS - len(self.columns), rho_values)
        except ValueError as err:
            self.say(str(err), error=True)
            return False
        if not self.columns:
            self.model.session.seed, self.model.session.batch = self.session.config.seed, self.session.config.batch
        return self.model.set_columns(self.columns + configs, self.seed, self.batch)

    def open_grid(self) -> None:
        dialog = GridDialog(self)
        if dialog.exec():
            self.add_grid(*dialog.choice())

    def set_column(self, index: int, config: RunConfig) -> bool:
        return self.model.set(index, config)

    def replace_selected(self) -> None:
        index = self.table.selected()
        if index is not None:
            self.set_column(index, self.session.config)

    def remove_column(self, index: int) -> bool:
        return self.model.remove(index)

    def remove_selected(self) -> None:
        index = self.table.selected()
        if index is not None:
            self.remove_column(index)

    def _latents_changed(self) -> None:
        self.model.set_latents(self.seed_box.value(), self.batch_box.value())

    def _set_latent_boxes(self) -> None:
        for box, value in ((self.seed_box, self.seed), (self.batch_box, self.batch)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def _denoiser_changed(self, denoiser: Denoiser) -> None:
        """A new denoiser: the columns stay, their runs, the reference and the sweep (of the old one) go."""
        if self.worker.is_running():
            self.worker.cancel()
        self._own = None
        self.model.set_model(self.session.denoiser_spec, denoiser.shape, tuple(float(v) for v in denoiser.data_range))
        self.say("A new denoiser: press Run all for its columns." if self.columns else "")

    # ------------------------------------------------------------------ running
    def _denoiser(self) -> Denoiser:
        """The comparison's own copy of the session's denoiser (made once per denoiser)."""
        den = self.session.denoiser
        if self._own is None or self._own[0] != id(den):
            self._own = (id(den), copy.deepcopy(den))
        return self._own[1]

    def start(self, job: Job) -> bool:
        """Run a job on the worker; False (with a message) when another one is going on."""
        if self.worker.is_running():
            self.say("Wait for the current run to finish, or cancel it.", error=True)
            return False
        self.job = job
        self.model.set_status(starting(None, None, job.what))
        self.say(job.what)
        self.worker.start(job.events, observe=job.observe, convert=job.progress_text, finish=job.finish)
        self._update_buttons()
        return True

    def _ready(self) -> Optional[Comparison]:
        try:
            comparison = self.comparison()
        except ValueError as err:
            self.say(str(err), error=True)
            return None
        if comparison is None:
            self.say("Add a column first.", error=True)
        return comparison

    def run_all(self, columns: Optional[list[int]] = None) -> bool:
        """Run every column (or the listed ones) on the worker; the window stays responsive."""
        comparison = self._ready()
        if comparison is None:
            return False
        return self.start(ColumnsJob(self.model, self._denoiser(), comparison, columns,
                                     f"Running {len(comparison.columns)} column(s) from seed {self.seed}…"))

    def run_reference(self) -> bool:
        """One click: the high-accuracy reference run for the same latents (its cost said first)."""
        comparison = self._ready()
        if comparison is None:
            return False
        return self.start(ReferenceJob(self.model, self._denoiser(), comparison, adaptive_visited(self.runs),
                                       self._reference_cost(comparison)))

    def _reference_cost(self, comparison: Comparison) -> str:
        """What the reference will cost, from the columns already run (float64, ~6 NFE per grid interval)."""
        points = len(self.state.axis) or max(c.steps or 18 for c in comparison.columns) + 1
        rate = [r.seconds / max(1, r.trajectory.nfe) for r in self.runs if r is not None and math.isfinite(r.seconds)]
        nfe = 6 * max(1, points - 1)
        cost = f"; at the columns' speed in float64 about {2 * nfe * min(rate):.0f} s or more" if rate else ""
        return (f"Running the reference (RK45, float64, rtol {comparison.reference_rtol:.0e}) through {points} σ's: "
                f"at least {nfe} NFE{cost}.")

    def run_sweep(self) -> bool:
        """Error against NFE for the checked solvers, in the background."""
        try:
            solvers = self.plots.checked_solvers()
            if not solvers:
                raise ValueError("Check at least one solver for the sweep.")
            budgets = parse_budgets(self.plots.sweep_budgets.text())
            template = self.columns[0] if self.columns else self.session.config
            base = template.replace(final="sigma_min", dtype="float64", batch=min(self.batch, SWEEP_BATCH),
                                    seed=self.seed, steps=None, nfe=budgets[-1], solver=solvers[0], churn=0.0)
        except ValueError as err:
            self.say(str(err), error=True)
            return False
        self.plots.show_sweep_tab()
        return self.start(SweepJob(self.model, self._denoiser(), base, solvers, budgets,
                                   f"Sweeping {', '.join(solvers)} over NFE {budgets}…"))

    def cancel(self) -> None:
        if self.worker.is_running():
            self.worker.cancel()
            self.say("Cancelling…")

    def _on_progress(self, text: str) -> None:
        self.progress.setFormat(text)

    def _on_finished(self, result: Any) -> None:
        job = self.job
        try:
            text = job.done(result) if job is not None else ""
        except Exception as err:  # noqa: BLE001 - a failing report must not leave the tab busy
            self._ended("failed", f"Failed: {err}", error=True)
            return
        self._ended("finished", text or self._summary())

    def _ended(self, how: str, text: str, error: bool = False) -> None:
        """Any end of a job: the tab is usable again, whatever happened."""
        self.job = None
        self.model.set_status(self.model.status.end(how, text))
        self.say(text, error=error)
        self._update_buttons()
        self.deferred.add(lambda: self.runEnded.emit(how))  # after the drawing the job's results queued

    def _show_status(self, status: RunStatus) -> None:
        if status.running:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(1)
            self.progress.setFormat("")

    def _summary(self) -> str:
        done = sum(r is not None for r in self.runs)
        ref = "; reference ready" if self.reference is not None else "; press Reference for the errors"
        return f"{done} of {len(self.columns)} columns done{ref}."

    def say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("QLabel { color: #a01010; }" if error else "")

    def _update_buttons(self) -> None:
        busy = self.worker.is_running()
        has = bool(self.columns)
        selected = self.table.selected() is not None
        for button, on in ((self.add_button, not busy), (self.grid_button, not busy),
                           (self.replace_button, not busy and selected), (self.remove_button, not busy and selected),
                           (self.run_button, not busy and has), (self.reference_button, not busy and has),
                           (self.cancel_button, busy), (self.plots.sweep_button, not busy), (self.export_button, not busy)):
            button.setEnabled(on)
        for widget in (self.seed_box, self.batch_box, self.table, self.rtol_box):
            widget.setEnabled(not busy)
        self.exports.update_actions()

    # ------------------------------------------------------------------ files (the export menu does the work)
    def result(self) -> Optional[ComparisonResult]:
        """The finished comparison (every column run), or None."""
        return self.state.result()

    def export_to(self, folder: str | Path) -> bool:
        return self.exports.export_to(folder)

    def save_sweep(self, folder: str | Path) -> list[Path]:
        return self.exports.save_sweep(folder)

    def load_document(self, path: str | Path) -> None:
        self.exports.load_document(path)

    def use_comparison(self, comparison: Comparison) -> None:
        """Take the columns, seed, batch and tolerance of a comparison (its model must be the current one)."""
        if comparison.model != self.session.denoiser_spec:
            raise ValueError(f"The file compares {comparison.model!r}; open that denoiser first (now {self.session.denoiser_spec!r}).")
        self.model.set_columns(comparison.columns, comparison.seed, comparison.batch, comparison.reference_rtol)
        rtol = self.rtol_box.findData(comparison.reference_rtol)
        if rtol < 0:
            self.rtol_box.addItem(f"rtol {comparison.reference_rtol:.0e}", comparison.reference_rtol)
            rtol = self.rtol_box.count() - 1
        self.rtol_box.blockSignals(True)
        self.rtol_box.setCurrentIndex(rtol)
        self.rtol_box.blockSignals(False)
        self._set_latent_boxes()

    def shutdown(self) -> None:
        """Stop any job (the window is closing)."""
        self.worker.shutdown()
