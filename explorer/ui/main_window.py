"""The main window: control panel, Run and Compare tabs, menus, runs and errors.

It owns the run session (the denoiser and the configuration, held once), its two Qt
faces and the worker, and is the only place that starts runs. Every failure — a file that will not load, a run that runs out of
memory or produces NaN, an export to a bad place — ends in the banner and the status
bar; the previous denoiser and the previous finished run stay in place.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow, QMessageBox, QPushButton, QSplitter, QTabWidget,
    QVBoxLayout, QWidget,
)

from explorer import __version__
from explorer.core.compare import Comparison
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.defaults import default_run_config
from explorer.core.sampling import sample_steps
from explorer.export.files import save_image, save_text
from explorer.export.grids import sample_grid
from explorer.models.loader import builtin_names, default_model_name, describe, load_denoiser
from explorer.session.run import RunSession
from explorer.session.status import RunStatus, starting
from explorer.ui.config_model import ConfigModel
from explorer.ui.controls import ControlPanel
from explorer.ui.deferred import Deferred
from explorer.ui.frames import RunRecord, StepFrame
from explorer.ui.run_view import RunView
from explorer.ui.session import Session
from explorer.ui.settings import AppSettings
from explorer.ui.sigma_view import MODES
from explorer.ui.widgets import guard_wheel
from explorer.ui.worker import GeneratorWorker, error_message

OPEN_FILTER = "Denoisers (*.safetensors *.json *.pkl *.npy *.npz);;All files (*)"
LOAD_ERRORS = (ValueError, OSError, RuntimeError, MemoryError, KeyError, TypeError, ImportError)


class Banner(QFrame):
    """A dismissable red line at the top of the window for errors."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setStyleSheet("#banner { background: #fde8e8; border: 1px solid #e0a0a0; } QLabel { color: #8a1010; }")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        close = QPushButton("✕")
        close.setFlat(True)
        close.setFixedWidth(28)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 4, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.hide()

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()


class MainWindow(QMainWindow):
    """The application window.

    Signals:
        runEnded(str): "finished", "failed" or "cancelled" (for scripts and tests), once the
            run's end is drawn.
    """

    runEnded = Signal(str)

    def __init__(self, settings: AppSettings, denoiser_spec: Optional[str] = None, autorun: bool = True,
                 remember: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.remember = remember
        settings.read_only = settings.read_only or not remember  # e.g. --screenshot: read, never write
        self.setWindowTitle(f"Diffusion Explorer {__version__}")
        self.resize(1400, 900)
        self._run_started = 0.0
        self._live_record: Optional[RunRecord] = None
        self.record: Optional[RunRecord] = None
        self.recent = settings.recent()
        spec, denoiser, problem = self._first_denoiser(denoiser_spec)
        config = settings.config() or default_run_config(denoiser)
        self.state = RunSession(denoiser, spec, config)  # the denoiser and config, held once
        self.model = ConfigModel(self.state, self)  # the control panel's face of it
        self.session = Session(self.state, self)  # the tabs' face of it
        self.worker = GeneratorWorker(self)
        self.deferred = Deferred(self)  # a run's end, drawn in short slots (explorer.ui.deferred)
        self._build()
        self._build_menus()
        self._connect()
        self._denoiser_ready(denoiser)
        self._restore_geometry()
        self._restore_views()
        if problem:
            self.show_error(problem)
        if autorun:
            QTimer.singleShot(0, self.start_run)

    # ------------------------------------------------------------------ construction
    def _first_denoiser(self, wanted: Optional[str]) -> tuple[str, Denoiser, Optional[str]]:
        """The remembered (or asked-for) denoiser; the default one if it will not load."""
        spec = wanted or self.settings.denoiser() or default_model_name()
        try:
            return spec, load_denoiser(spec), None
        except LOAD_ERRORS as err:
            fallback = default_model_name()
            return fallback, load_denoiser(fallback), f"Could not open {spec}: {error_message(err)} Using {fallback} instead."

    def _build(self) -> None:
        self.panel = ControlPanel(self.model)
        self.run_view = RunView()
        self.banner = Banner()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("tabs")
        self.tabs.addTab(self.run_view, "Run")
        self.compare_view = self._make_compare()
        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.addWidget(self.panel)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([340, 1060])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(4, 4, 4, 0)
        layout.setSpacing(3)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)
        self.setCentralWidget(central)
        guard_wheel(self.panel, self.run_view, self.compare_view)
        self.status_label = QLabel("Ready")
        self.statusBar().addWidget(self.status_label, 1)
        self.denoiser_status = QLabel()
        self.statusBar().addPermanentWidget(self.denoiser_status)

    def _make_compare(self) -> Optional[QWidget]:
        """The Compare tab, when its module is there and builds; the Run tab never depends on it."""
        try:
            from explorer.ui.compare_view import CompareView
        except ImportError:
            return None
        try:
            view = CompareView(self.session, self)
        except Exception as err:  # noqa: BLE001 - a broken tab must not take the window down
            message = f"The Compare tab could not be built: {error_message(err)}"  # err is unbound after the block
            QTimer.singleShot(0, lambda: self.show_error(message))
            return None
        self.tabs.addTab(view, "Compare")
        return view

    def _action(self, menu, text: str, slot: Callable, shortcut: Optional[QKeySequence | str] = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.WindowShortcut)
        action.triggered.connect(lambda *_: slot())
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&Open denoiser…", self.open_dialog, QKeySequence.Open)
        self._action(file, "Open a &diffusers folder…", self.open_folder_dialog)
        self.recent_menu = file.addMenu("Open &recent")
        file.addSeparator()
        self.export_actions = [
            self._action(file, "Export &trajectory (.safetensors)…", self.export_trajectory),
            self._action(file, "Export sample &grid (PNG)…", self.export_grid),
            self._action(file, "Export run &configuration (JSON)…", self.export_config),
        ]
        self._action(file, "&Load run configuration (JSON)…", self.import_config)
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.Quit)
        run = bar.addMenu("&Run")
        self.sample_action = self._action(run, "&Sample", self.start_run, "Ctrl+R")
        self.cancel_action = self._action(run, "&Cancel", self.cancel_run, "Esc")
        view = bar.addMenu("&View")
        self._action(view, "Show/hide the &controls", lambda: self.panel.setVisible(not self.panel.isVisible()), "Ctrl+B")
        lower = view.addMenu("Lower &σ plot")
        for key, text in MODES.items():
            self._action(lower, text, lambda k=key: self._set_sigma_mode(k))
        view.addSeparator()
        self._action(view, "&Reset settings (window, configuration, recent files)", self.reset_settings)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About Diffusion Explorer", self.about)
        self._fill_recent_menu()
        self._update_actions()

    def _connect(self) -> None:
        self.panel.sampleClicked.connect(self.start_run)
        self.panel.cancelClicked.connect(self.cancel_run)
        self.panel.denoiserPicked.connect(self.choose_denoiser)
        self.panel.openRequested.connect(self.open_dialog)
        self.panel.openFolderRequested.connect(self.open_folder_dialog)
        self.model.changed.connect(self._model_changed)
        self.worker.frameReady.connect(self._on_frame)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.run_view.pixelsChanged.connect(self._pixels_changed)
        self.session.denoiserChanged.connect(self._denoiser_switched)
        self.session.statusChanged.connect(self.panel.show_status)
        self.session.statusChanged.connect(self.run_view.show_status)

    def _restore_geometry(self) -> None:
        """Remembered size and splitters; a screenshot window keeps the default 1400×900."""
        if not self.remember:
            return
        geometry = self.settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        splitters = self.settings.splitters()
        for name, splitter in self._splitters().items():
            if name in splitters:
                splitter.restoreState(splitters[name])

    def _restore_views(self) -> None:
        """The remembered lower σ plot and the Compare tab's columns (when they compare this denoiser)."""
        mode = self.settings.view_value("sigma_mode", "sigma")
        if mode in MODES:
            self.run_view.select_sigma_mode(mode)
        text = self.settings.view_value("comparison", "")
        if text and self.compare_view is not None:
            try:
                self.compare_view.use_comparison(Comparison.from_json(text))
            except ValueError:
                pass  # another denoiser's (or an old) comparison: start with no columns

    def _splitters(self) -> dict[str, QSplitter]:
        return {"main": self.splitter, "run": self.run_view.splitter, "bottom": self.run_view.bottom}

    # ------------------------------------------------------------------ denoiser
    def choose_denoiser(self, spec: str) -> bool:
        """Load a denoiser by name or path; on failure keep the current one and say why."""
        if spec == self.session.denoiser_spec:
            return True
        QApplicationHelper.busy(True)
        try:
            denoiser = load_denoiser(spec)
        except LOAD_ERRORS as err:
            self.show_error(f"Could not open {spec}: {error_message(err)}")
            if spec in self.recent and not Path(spec).exists():
                self.recent = self.settings.remove_recent(spec)
                self._fill_recent_menu()
            self._fill_denoisers()
            return False
        finally:
            QApplicationHelper.busy(False)
        if Path(spec).exists():
            spec = str(Path(spec).resolve())
            self.recent = self.settings.add_recent(spec)
            self._fill_recent_menu()
        self.use_denoiser(denoiser, spec)
        return True

    def use_denoiser(self, denoiser: Denoiser, spec: str) -> None:
        """Make a loaded denoiser current (a run going on is cancelled first)."""
        if self.worker.is_running():
            self.cancel_run()
            self.worker.wait()
        self.session.set_denoiser(denoiser, spec)  # the views follow through _denoiser_switched
        self.banner.hide()
        self.status(f"Opened {describe(denoiser)}")

    def _denoiser_switched(self, denoiser: Denoiser) -> None:
        """Whoever switched it (the panel, a loaded configuration, a script through the session),
        the old run is not this denoiser's: the views and the actions follow the new one."""
        self.record = None
        self._denoiser_ready(denoiser)

    def _denoiser_ready(self, denoiser: Denoiser) -> None:
        self.panel.denoiser_changed()
        self._fill_denoisers()
        self._show_denoiser_status()
        self.run_view.set_denoiser(denoiser)
        self.run_view.set_plan(self.model.plan)
        self._update_actions()

    def _fill_denoisers(self) -> None:
        spec = self.session.denoiser_spec
        self.panel.set_denoisers(builtin_names(), self.recent, spec, describe(self.session.denoiser))

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a denoiser", self.settings.last_folder(), OPEN_FILTER)
        if path:
            self.settings.set_last_folder(str(Path(path).parent))
            self.choose_denoiser(path)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a diffusers model folder", self.settings.last_folder())
        if folder:
            self.choose_denoiser(folder)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent:
            self._action(self.recent_menu, path, lambda p=path: self.choose_denoiser(p))
        self.recent_menu.setEnabled(bool(self.recent))

    # ------------------------------------------------------------------ running
    def start_run(self) -> bool:
        """Start the configured run on the worker thread (False when it cannot start)."""
        config, plan = self.model.config, self.model.plan
        if self.worker.is_running() or config is None or plan is None:
            return False
        self.deferred.flush()  # the last run's end is drawn, and reported, before this run begins
        denoiser = self.session.denoiser
        record = RunRecord(denoiser, config, self.session.denoiser_spec, pixels=self.run_view.pixels)
        self._live_record = record
        self._run_started = time.perf_counter()
        total = plan.n_steps + (config.final == "denoise") if plan.nfe is not None else None
        self.session.set_status(starting(total, self.model.nfe))
        self.worker.start(lambda: sample_steps(denoiser, config, plan=plan), observe=record.observe,
                          convert=record.latest_frame, finish=record.finish)
        self._update_actions()
        self.status(f"Sampling {describe(denoiser).split(':')[0]} with {config.solver}…")
        return True

    def cancel_run(self) -> None:
        if self.worker.is_running():
            self.worker.cancel()
            self.status("Cancelling…")

    def _on_frame(self, frame: StepFrame) -> None:
        self.run_view.show_frame(frame, live=True)
        if self.session.status.running:
            self.session.set_status(self.session.status.advance(frame.index, frame.nfe))
        self.status(self._speed_text(frame, running=True))

    @staticmethod
    def _speed_text(frame: StepFrame, running: bool) -> str:
        total = f"/{frame.total}" if frame.total else ""
        what = "Sampling" if running else "Done"
        rate = frame.steps_per_second
        speed = f"{rate:.1f} steps/s" if rate >= 1 else (f"{1 / rate:.1f} s/step" if rate > 0 else "")
        return f"{what}: step {frame.index}{total}, NFE {frame.nfe}, {frame.elapsed:.2f} s elapsed" + (f", {speed}" if speed else "")

    def _run_over(self, state: str, record: Optional[RunRecord] = None) -> None:
        """Any end of a run: the status says how it ended and where (the last run's step and NFE)."""
        self._live_record = None
        shown = record or (self.record if self.record is not None and self.record.denoiser is self.session.denoiser else None)
        if shown is not None and shown.num_states:
            last = shown.frame(shown.num_states - 1, pictures=False)
            self.session.set_status(RunStatus(state, last.index, max(1, last.index), last.nfe))
        else:
            self.session.set_status(RunStatus(state))
        self._update_actions()

    def _on_finished(self, record: RunRecord) -> None:
        """The run is done. The live view already shows its last step (the worker's final frame,
        drawn in the slot before this one); the rest follows in short slots (:meth:`_end_later`)."""
        self.record = record
        self.session.set_trajectory(record.trajectory)
        last = record.frame(record.num_states - 1, pictures=False)
        self._end_later("finished", record, self._speed_text(last, running=False))

    def _end_later(self, how: str, record: Optional[RunRecord], text: str = "") -> None:
        """The rest of a run's end, each piece a slot of its own: the views reset for the
        denoiser (after a failed or cancelled run), the kept run shown in them (slider, PCA
        paths; its last frame is the one the live view already drew), then the status, the
        actions and runEnded.

        Why: done in the end-of-run slot, with the final frame drawn twice over, it held the
        GUI thread 19–30 ms; each piece alone stays within the 16 ms a slot may take. A
        finished run's views are already this denoiser's, so they are not reset.
        """
        if how != "finished":
            self.deferred.add(self._reset_views)
        self.deferred.add(self._show_kept)
        self.deferred.add(lambda: self._report_end(how, record, text))

    def _reset_views(self) -> None:
        if not self.worker.is_running():  # a new run's live view is not touched
            self.run_view.set_denoiser(self.session.denoiser)

    def _show_kept(self) -> None:
        """The views of the last run kept (finished, or cancelled part-way), if it is this denoiser's."""
        if not self.worker.is_running() and self.record is not None and self.record.denoiser is self.session.denoiser:
            self.run_view.show_record(self.record)

    def _report_end(self, how: str, record: Optional[RunRecord], text: str) -> None:
        if not self.worker.is_running():
            self._run_over(how, record)
        if text:
            self.status(text)
        self.runEnded.emit(how)

    def _on_failed(self, message: str) -> None:
        steps = self._live_record.num_states - 1 if self._live_record is not None else 0
        self._end_later("failed", None)
        self.show_error(f"The run failed after {steps} steps: {message}")

    def _on_cancelled(self) -> None:
        """Keep the steps made: the partial run becomes the shown record, scrubbable, marked cancelled."""
        live = self._live_record
        steps = live.num_states - 1 if live is not None else 0
        kept = False
        if live is not None and live.num_states > 1:
            try:
                self.record = live.finish()
                kept = True
            except (ValueError, RuntimeError):
                pass  # a record that cannot close (e.g. no finished step) leaves the previous run
        shown = "; its steps are kept (scrub them)" if kept else ("; showing the previous run" if self.record is not None else "")
        self._end_later("cancelled", self.record if kept else None, f"Cancelled after {steps} steps{shown}.")

    def _pixels_changed(self, pixels: tuple) -> None:
        if self._live_record is not None:
            self._live_record.pixels = pixels  # read by the worker at its next frame

    # ------------------------------------------------------------------ model
    def _model_changed(self) -> None:
        self.run_view.set_plan(self.model.plan)
        self._show_denoiser_status()
        self._update_actions()

    def _show_denoiser_status(self) -> None:
        """The status bar's denoiser line with the σ range the planned run covers."""
        plan = self.model.plan
        text = describe(self.session.denoiser, plan.sigma_range if plan is not None else None)
        if self.denoiser_status.text() != text:
            self.denoiser_status.setText(text)

    def _update_actions(self) -> None:
        running = self.worker.is_running()
        self.sample_action.setEnabled(self.model.config is not None and not running)
        self.cancel_action.setEnabled(running)
        for action in self.export_actions:
            action.setEnabled(self.record is not None)

    def _set_sigma_mode(self, mode: str) -> None:
        self.run_view.select_sigma_mode(mode)
        self.settings.set_view_value("sigma_mode", mode)

    # ------------------------------------------------------------------ exports
    def _save_path(self, title: str, name: str, filter_: str) -> Optional[Path]:
        start = str(Path(self.settings.last_folder() or ".") / name)
        path, _ = QFileDialog.getSaveFileName(self, title, start, filter_)
        if not path:
            return None
        self.settings.set_last_folder(str(Path(path).parent))
        return Path(path)

    def export_trajectory(self, path: Optional[Path] = None) -> bool:
        if self.record is None or self.record.trajectory is None:
            return False
        path = path or self._save_path("Export the trajectory", "run.safetensors", "Trajectories (*.safetensors *.npz)")
        return path is not None and self._guarded(lambda: self.record.trajectory.save(path), f"Saved the trajectory to {path}")

    def export_grid(self, path: Optional[Path] = None) -> bool:
        if self.record is None or self.record.trajectory is None:
            return False
        path = path or self._save_path("Export the sample grid", "samples.png", "PNG images (*.png)")
        traj, den = self.record.trajectory, self.record.denoiser
        scale = max(1, 256 // max(den.shape[-1], 1)) if den.is_image else 1
        return path is not None and self._guarded(
            lambda: save_image(sample_grid(traj.samples, den.data_range, scale=min(scale, 8)), path),
            f"Saved the sample grid to {path}")

    def export_config(self, path: Optional[Path] = None) -> bool:
        """The run configuration as JSON, with the denoiser it was made for (loading it opens that one)."""
        config = self.record.config if self.record is not None else self.model.config
        if config is None:
            return False
        path = path or self._save_path("Export the run configuration", "run.json", "JSON (*.json)")
        text = json.dumps({"denoiser": self.session.denoiser_spec, **config.to_dict()}, indent=2, sort_keys=True)
        return path is not None and self._guarded(lambda: save_text(text + "\n", path),
                                                  f"Saved the run configuration to {path}")

    def import_config(self, path: Optional[Path] = None) -> bool:
        """Load a run configuration; one that names another denoiser opens that denoiser first."""
        if path is None:
            name, _ = QFileDialog.getOpenFileName(self, "Load a run configuration", self.settings.last_folder(), "JSON (*.json)")
            path = Path(name) if name else None
        if path is None:
            return False
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict):
                raise ValueError("The run configuration must be a JSON object.")
            spec = data.pop("denoiser", None)
            config = RunConfig.from_dict(data)
        except (OSError, ValueError, TypeError) as err:
            self.show_error(f"Could not load {Path(path).name}: {error_message(err)}")
            return False
        if spec is not None and spec != self.session.denoiser_spec and not self.choose_denoiser(str(spec)):
            return False  # choose_denoiser said why; nothing was changed
        self.model.load(config)
        named = f" (for {spec})" if spec else " (it names no denoiser: check the batch and labels)"
        self.status(f"Loaded the run configuration from {path}{named}")
        return True

    def _guarded(self, action: Callable[[], object], done: str) -> bool:
        try:
            action()
        except (OSError, ValueError, RuntimeError) as err:
            self.show_error(error_message(err))
            return False
        self.status(done)
        return True

    # ------------------------------------------------------------------ messages, settings
    def show_error(self, message: str) -> None:
        self.banner.show_message(message)
        self.status(message)

    def status(self, text: str) -> None:
        self.status_label.setText(text)

    def about(self) -> None:
        QMessageBox.about(self, "About Diffusion Explorer",
                          f"<b>Diffusion Explorer {__version__}</b><p>See how diffusion models sample: "
                          "processes, time steps and solvers, step by step.</p>"
                          f"<p>PyTorch {torch.__version__}.</p>")

    def reset_settings(self) -> None:
        """Forget remembered state and return the window and the controls to defaults."""
        self.settings.reset()
        self.recent = []
        self._fill_recent_menu()
        self._fill_denoisers()
        self.resize(1400, 900)
        self.splitter.setSizes([340, 1060])
        self.model.load(default_run_config(self.session.denoiser))
        self._set_sigma_mode("sigma")
        self.status("Settings reset to defaults.")

    def save_settings(self) -> None:
        if not self.remember:
            return
        self.settings.set_geometry(self.saveGeometry())
        for name, splitter in self._splitters().items():
            self.settings.set_splitter(name, splitter.saveState())
        config = self.model.config or self.session.config
        self.settings.set_config(config)
        self.settings.set_denoiser(self.session.denoiser_spec)
        self.settings.set_view_value("sigma_mode", self.run_view.sigma_mode())
        comparison = self.compare_view.comparison() if self.compare_view is not None else None
        self.settings.set_view_value("comparison", comparison.to_json(indent=None) if comparison is not None else "")
        self.settings.sync()

    def closeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt's name
        self.worker.shutdown()
        if self.compare_view is not None:
            self.compare_view.shutdown()  # else its thread is waited for at exit
        self.save_settings()
        super().closeEvent(event)


class QApplicationHelper:
    """A wait cursor around loads that may take a moment."""

    @staticmethod
    def busy(on: bool) -> None:
        if on:
            QApplication.setOverrideCursor(Qt.WaitCursor)
        else:
            QApplication.restoreOverrideCursor()
