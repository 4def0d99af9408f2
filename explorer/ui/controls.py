"""The side panel: every run setting, bound to one :class:`ConfigModel`.

Each control writes its field into the model as it changes; the model says whether
the combination is possible. An impossible one is shown under the control to blame,
in red with the core's sentence, and Sample is disabled. Controls that do not apply
to the chosen solver or discretization are greyed out (unless their value is the
problem, so it can be fixed where it is shown).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QProgressBar, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget,
)

from explorer.core.discretization import DISCRETIZATIONS, FINALS
from explorer.core.process import PROCESSES, SCALINGS, SCHEDULES
from explorer.core.solvers import SOLVERS, Option, all_options, get_solver
from explorer.models.loader import label_names, shipped_checkpoints
from explorer.session.status import RunStatus
from explorer.session.values import BUDGET, Invalid, active_options, option_field
from explorer.ui.config_model import ConfigModel
from explorer.ui.widgets import DataCombo

OPEN_ITEM = "Open…"
OPEN_FOLDER_ITEM = "Open diffusers folder…"
ERROR_STYLE = "color: #b00020;"


@dataclass
class _Binding:
    """One field's widget: how to read it, write it, and when it applies."""

    field: str
    widget: QWidget
    read: Callable[[], Any]
    write: Callable[[Any], None]
    error: QLabel
    applies: Callable[[], bool] = lambda: True


def _float_or_none(text: str, what: str, allow_inf: bool = False) -> Any:
    """Parse a line edit: empty → None (the default), a number, or an Invalid with a reason."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return Invalid(f"{what} must be a number, or empty for the default (got {text!r}).")
    if math.isinf(value) and not allow_inf:
        return Invalid(f"{what} must be finite (got {text}).")
    return value


def _format(value: Optional[float]) -> str:
    return "" if value is None else f"{value:g}"


def _option_editor(opt: Option, current: Callable[[], Option]) -> tuple[QWidget, Callable[[], Any], Callable[[Any], None], Any]:
    """(widget, read, write, edited signal) for one declared option, by its type; ``current``
    gives the chosen solver's declaration of that name (its label, bounds, optional or not)."""
    if opt.kind is bool:
        box = QCheckBox()
        return box, box.isChecked, lambda v: box.setChecked(bool(v)), box.toggled
    if opt.kind is str:
        combo = _combo([(c, c) for c in opt.choices])
        return combo, combo.value, lambda v: _set_combo(combo, v), combo.currentIndexChanged
    if opt.kind is tuple:
        return _items_editor(current)
    if opt.kind is int:
        spin = QSpinBox()
        spin.setRange(int(opt.low) if opt.low is not None else -(2**31), int(opt.high) if opt.high is not None else 2**31 - 1)
        spin.setKeyboardTracking(False)
        return spin, spin.value, lambda v: spin.setValue(int(v)), spin.valueChanged
    edit = QLineEdit()

    def read() -> Any:
        decl, text = current(), edit.text().strip()
        if not text:
            return None if decl.optional else Invalid(f"{decl.title} needs a value ({decl.bounds_text()}).")
        if decl.allow_inf and text.lower() in ("inf", "∞"):
            return math.inf
        return _float_or_none(text, decl.title, allow_inf=decl.allow_inf)

    def write(value: Any) -> None:
        edit.setText("inf" if isinstance(value, float) and math.isinf(value) else _format(value))

    return edit, read, write, edit.editingFinished


def _items_editor(current: Callable[[], Option]) -> tuple[QWidget, Callable[[], Any], Callable[[Any], None], Any]:
    """A line edit for a list option (Restart's intervals): the same text as its CLI flag,
    parsed by the declaration, so both front ends read and write one syntax."""
    edit = QLineEdit()

    def read() -> Any:
        decl = current()
        try:
            return decl.parse(edit.text())
        except ValueError as error:
            return Invalid(str(error))

    return edit, read, lambda value: edit.setText(current().text(value)), edit.editingFinished


def _pair(first: QWidget, label: str, second: QWidget) -> QWidget:
    """Two controls on one form row: ``first``, then ``label`` and ``second``."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(first, 1)
    layout.addWidget(QLabel(label))
    layout.addWidget(second, 1)
    return row


def _combo(items: list[tuple[str, Any]]) -> DataCombo:
    return DataCombo(items)


def _set_combo(box: DataCombo, data: Any) -> None:
    box.select(data)


def _double(lo: float, hi: float, decimals: int, step: float) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setKeyboardTracking(False)
    return box


class ControlPanel(QWidget):
    """Denoiser picker, run settings (scrollable), and Sample/Cancel with the run's progress.

    Signals:
        denoiserPicked(str): a built-in name or a recent file was chosen.
        openRequested(): "Open…" was chosen.
        openFolderRequested(): "Open diffusers folder…" was chosen.
        sampleClicked(), cancelClicked().
    """

    denoiserPicked = Signal(str)
    openRequested = Signal()
    openFolderRequested = Signal()
    sampleClicked = Signal()
    cancelClicked = Signal()

    def __init__(self, model: ConfigModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model = model
        self._bindings: dict[str, _Binding] = {}
        self._running = False
        self._loading = False
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._denoiser_group())
        layout.addWidget(self._batch_group())  # near the top: in view at 1024×640 without scrolling
        layout.addWidget(self._process_group())
        layout.addWidget(self._solver_group())
        layout.addWidget(self._options_group())
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.NoFrame)
        scroll.setWidget(body)
        scroll.setMinimumWidth(body.sizeHint().width() + 20)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll, 1)
        outer.addWidget(self._run_group())
        model.changed.connect(self.refresh)
        model.valuesReplaced.connect(self.read_model)
        self.read_model()

    # ------------------------------------------------------------------ building
    def _form(self, title: str) -> tuple[QGroupBox, QFormLayout]:
        group = QGroupBox(title)
        form = QFormLayout(group)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setContentsMargins(6, 4, 6, 4)
        form.setVerticalSpacing(3)
        return group, form

    def _bind(self, form: QFormLayout, label: str, field: str, widget: QWidget, read: Callable[[], Any],
              write: Callable[[Any], None], signal: Any, applies: Callable[[], bool] = lambda: True,
              row_widget: Optional[QWidget] = None, own_row: bool = True) -> None:
        """Add a labelled row (unless the widget sits in another row) plus a hidden error
        line, and route edits to the model."""
        error = QLabel()
        error.setWordWrap(True)
        error.setStyleSheet(ERROR_STYLE)
        error.hide()
        error.setObjectName(f"error_{field}")
        widget.setObjectName(f"control_{field}")
        if own_row:
            form.addRow(label, row_widget or widget)
        form.addRow(error)
        self._bindings[field] = _Binding(field, widget, read, write, error, applies)
        signal.connect(lambda *_: self._edited(field))

    def _denoiser_group(self) -> QGroupBox:
        group, form = self._form("Denoiser")
        self.denoiser_box = DataCombo()
        self.denoiser_box.setObjectName("denoiser_box")
        self.denoiser_box.activated.connect(self._denoiser_activated)
        self.denoiser_info = QLabel()
        self.denoiser_info.setWordWrap(True)
        self.denoiser_info.setStyleSheet("color: #555;")
        form.addRow(self.denoiser_box)
        form.addRow(self.denoiser_info)
        self.label_box = DataCombo()
        self._bind(form, "Class", "label", self.label_box, self.label_box.value,
                   lambda v: _set_combo(self.label_box, v), self.label_box.currentIndexChanged,
                   applies=lambda: self.model.denoiser.label_dim > 0)
        self._guidance_rows(form)
        return group

    def _guidance_rows(self, form: QFormLayout) -> None:
        """Guidance scale w and the guide (explorer.core.guidance): run-level, for every solver."""
        self.guidance_box = _double(0.0, 20.0, 2, 0.25)
        self.guidance_box.setToolTip("D_guide + w (D − D_guide); 1 = no guidance, 0 = the unconditional model "
                                     "(classifier-free). Each guided evaluation costs 2 network calls.")
        self._bind(form, "Guidance w", "guidance", self.guidance_box, self.guidance_box.value,
                   lambda v: self.guidance_box.setValue(float(v)), self.guidance_box.valueChanged)
        self.guide_box = _combo([("classifier-free (null label)", None)]
                                + [(name, name) for name in shipped_checkpoints() if name.endswith(("-early", "-guide"))])
        self.guide_box.setToolTip("The guide: the model itself given the null label, or a weaker snapshot "
                                  "(EDM2's autoguidance)")
        self._bind(form, "Guide", "guide", self.guide_box, self.guide_box.value,
                   lambda v: self._select_guide(v), self.guide_box.currentIndexChanged,
                   applies=lambda: self.model.value("guidance") != 1.0)

    def _select_guide(self, name: Optional[str]) -> None:
        if name is not None and self.guide_box.find(name) < 0:
            self.guide_box.add(_short(name), name, tooltip=name)
        _set_combo(self.guide_box, name)

    def _process_group(self) -> QGroupBox:
        group, form = self._form("Process and time steps")
        self.process_box = _combo([(name.upper(), name) for name in PROCESSES])
        self._bind(form, "Process", "process", self.process_box, self.process_box.value,
                   lambda v: _set_combo(self.process_box, v), self.process_box.currentIndexChanged)
        self.advanced = QGroupBox("σ(t) and s(t) apart (advanced)")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        adv = QFormLayout(self.advanced)
        adv.setContentsMargins(6, 2, 6, 2)
        self.schedule_box = _combo([(name, name) for name in SCHEDULES])
        self.scaling_box = _combo([(name, name) for name in SCALINGS])
        self.eps_box = _double(1e-6, 0.5, 6, 1e-4)
        self._bind(adv, "σ(t)", "sigma_schedule", self.schedule_box, self._read_schedule,
                   lambda v: None, self.schedule_box.currentIndexChanged)
        self._bind(adv, "s(t)", "scaling", self.scaling_box, self._read_scaling,
                   lambda v: None, self.scaling_box.currentIndexChanged)
        self._bind(adv, "ε_s", "epsilon_s", self.eps_box, self.eps_box.value, self.eps_box.setValue,
                   self.eps_box.valueChanged, applies=self._uses_vp)
        self.advanced.toggled.connect(self._advanced_toggled)
        form.addRow(self.advanced)
        self.disc_box = _combo([(name, name) for name in DISCRETIZATIONS])
        self._bind(form, "Time steps", "disc", self.disc_box, self.disc_box.value,
                   lambda v: _set_combo(self.disc_box, v), self.disc_box.currentIndexChanged,
                   applies=lambda: self.model.value("sigmas") is None)
        form.addRow("", self._grid_row())
        form.addRow(self.grid_label)
        self.rho_box = _double(-100.0, 1000.0, 2, 0.5)
        self._bind(form, "ρ", "rho", self.rho_box, self.rho_box.value, self.rho_box.setValue,
                   self.rho_box.valueChanged, applies=lambda: self.model.value("disc") == "edm")
        self.sigma_min_edit, self.sigma_max_edit = QLineEdit(), QLineEdit()
        for edit, field, what in ((self.sigma_min_edit, "sigma_min", "σ_min"), (self.sigma_max_edit, "sigma_max", "σ_max")):
            self._bind(form, what, field, edit, (lambda e=edit, w=what: _float_or_none(e.text(), w)),
                       (lambda v, e=edit: e.setText(_format(v))), edit.editingFinished)
        return group

    def _grid_row(self) -> QWidget:
        """"Custom grid…": a σ grid file (explorer.core.grids) in place of the discretization."""
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        self.grid_button = QPushButton("Custom grid…")
        self.grid_button.setToolTip("Load a σ grid file (.json or .npy): presets, optimized steps, AYS tables")
        self.grid_button.clicked.connect(self._pick_grid)
        self.grid_clear = QPushButton("Clear")
        self.grid_clear.clicked.connect(self.clear_grid)
        self.grid_label = QLabel()
        self.grid_label.setObjectName("grid_label")
        self.grid_label.setWordWrap(True)
        self.grid_label.setStyleSheet("color: #555;")
        layout.addWidget(self.grid_button)
        layout.addWidget(self.grid_clear)
        layout.addStretch(1)
        return row

    def _pick_grid(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Load a σ grid", "", "Grids (*.json *.npy)")
        if path:
            self.load_grid_file(path)

    def load_grid_file(self, path: str) -> bool:
        """Use a grid file's σ's (and a preset's run settings, when the file carries them)."""
        from explorer.core.grids import grid_config_fields, load_grid

        try:
            grid = load_grid(path)
            fields = grid_config_fields(grid)
        except (ValueError, FileNotFoundError) as err:
            self.general_error.setText(str(err))
            self.general_error.setVisible(True)
            return False
        for name, value in fields.items():
            self.model.set_value(name, value)
        notes = grid.info.get("notes") or []  # what a preset reproduces that the ODE would not do
        self.grid_label.setToolTip("\n".join(notes) if notes else grid.source)
        self.read_model()
        return True

    def clear_grid(self) -> None:
        for name in ("timesteps", "sigmas", "init_sigma", "orders", "schedule_label"):
            self.model.set_value(name, None)
        self.refresh()

    def _solver_group(self) -> QGroupBox:
        group, form = self._form("Solver")
        items = [(f"{name}  (order {info.order})", name) for name, info in SOLVERS.items()]
        self.solver_box = _combo(items)
        self._bind(form, "Solver", "solver", self.solver_box, self.solver_box.value,
                   lambda v: _set_combo(self.solver_box, v), self.solver_box.currentIndexChanged)
        self.solver_info = QLabel()
        self.solver_info.setWordWrap(True)
        self.solver_info.setStyleSheet("color: #555;")
        form.addRow(self.solver_info)
        self.budget_box = _combo([("Steps", False), ("NFE budget", True)])
        self.steps_box, self.nfe_box = QSpinBox(), QSpinBox()
        for box in (self.steps_box, self.nfe_box):
            box.setRange(1, 100_000)
            box.setKeyboardTracking(False)
        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.addWidget(self.budget_box)
        row_layout.addWidget(self.steps_box)
        row_layout.addWidget(self.nfe_box)
        self._bind(form, "Count", BUDGET, self.budget_box, self.budget_box.value,
                   lambda v: _set_combo(self.budget_box, bool(v)), self.budget_box.currentIndexChanged, row_widget=row)
        self._bind(form, "", "steps", self.steps_box, self.steps_box.value, self.steps_box.setValue,
                   self.steps_box.valueChanged, own_row=False)
        self._bind(form, "", "nfe", self.nfe_box, self.nfe_box.value, self.nfe_box.setValue,
                   self.nfe_box.valueChanged, own_row=False)
        self.nfe_label = QLabel()
        self.nfe_label.setObjectName("nfe_label")
        self.nfe_label.setStyleSheet("font-weight: bold;")
        form.addRow("NFE", self.nfe_label)
        self.steps_box.lineEdit().textEdited.connect(self._preview_nfe)  # before Enter commits it
        self.final_box = _combo([(name, name) for name in FINALS])
        self._bind(form, "Final step", "final", self.final_box, self.final_box.value,
                   lambda v: _set_combo(self.final_box, v), self.final_box.currentIndexChanged)
        self.lof_box = QCheckBox("lower-order final steps")
        self._bind(form, "", "lower_order_final", self.lof_box, self.lof_box.isChecked, self.lof_box.setChecked,
                   self.lof_box.toggled,
                   applies=lambda: self._info().rule.applies_lower_order_final(self._solver_options()))
        return group

    def _options_group(self) -> QGroupBox:
        """One row per option any solver declares; only the chosen solver's rows are shown."""
        group, form = self._form("Solver options")
        self._options_form = form
        self.no_options = QLabel("This solver has no options of its own.")
        self.no_options.setStyleSheet("color: #555;")
        form.addRow(self.no_options)
        self.option_widgets: dict[str, QWidget] = {}
        for name, opt in all_options().items():
            widget, read, write, signal = _option_editor(opt, lambda n=name, o=opt: self._declaration(n, o))
            self.option_widgets[name] = widget
            self._bind(form, opt.title, option_field(name), widget, read, write, signal)
        return group

    def _declaration(self, name: str, fallback: Option) -> Option:
        for opt in active_options(self.model.value("solver")):
            if opt.name == name:
                return opt
        return fallback

    def option_widget(self, name: str) -> QWidget:
        """The control of a solver option (tests and tooltips)."""
        return self.option_widgets[name]

    def _batch_group(self) -> QGroupBox:
        """Seed and batch on one row, device and dtype on the next: four settings in two lines."""
        group, form = self._form("Samples and device")
        self.seed_box, self.batch_box = QSpinBox(), QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.batch_box.setRange(1, 65536)
        for box in (self.seed_box, self.batch_box):
            box.setKeyboardTracking(False)
        self.device_box = _combo([(d, d) for d in ("auto", "cpu", "cuda")])
        self.dtype_box = _combo([(d, d) for d in ("float32", "float64")])
        seed_row, device_row = _pair(self.seed_box, "Batch", self.batch_box), _pair(self.device_box, "dtype", self.dtype_box)
        self._bind(form, "Seed", "seed", self.seed_box, self.seed_box.value, self.seed_box.setValue,
                   self.seed_box.valueChanged, row_widget=seed_row)
        self._bind(form, "", "batch", self.batch_box, self.batch_box.value, self.batch_box.setValue,
                   self.batch_box.valueChanged, own_row=False)
        self._bind(form, "Device", "device", self.device_box, self.device_box.value,
                   lambda v: _set_combo(self.device_box, v), self.device_box.currentIndexChanged, row_widget=device_row)
        self._bind(form, "", "dtype", self.dtype_box, self.dtype_box.value,
                   lambda v: _set_combo(self.dtype_box, v), self.dtype_box.currentIndexChanged, own_row=False)
        return group

    def _run_group(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(6, 4, 6, 4)
        self.general_error = QLabel()
        self.general_error.setObjectName("general_error")
        self.general_error.setWordWrap(True)
        self.general_error.setStyleSheet(ERROR_STYLE)
        self.general_error.hide()
        layout.addWidget(self.general_error)
        buttons = QHBoxLayout()
        self.sample_button = QPushButton("Sample")
        self.sample_button.setToolTip("Run the sampler (Ctrl+R)")
        self.sample_button.setStyleSheet("font-weight: bold;")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run after the current step (Esc)")
        self.cancel_button.setEnabled(False)
        self.sample_button.clicked.connect(self.sampleClicked)
        self.cancel_button.clicked.connect(self.cancelClicked)
        buttons.addWidget(self.sample_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setFormat("step %v / %m")
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.nfe_counter = QLabel("NFE 0")
        self.nfe_counter.setObjectName("nfe_counter")
        layout.addWidget(self.nfe_counter)
        self.progress.setFormat("no run yet")
        return box

    # ------------------------------------------------------------------ helpers
    def _info(self):
        solver = self.model.value("solver")
        return get_solver(solver)

    def _solver_options(self) -> dict[str, Any]:
        """The chosen solver's option values as the panel holds them (some change its step rule)."""
        values = self.model.values
        return {o.name: values[option_field(o.name)] for o in self._info().options}

    def _preview_nfe(self, _text: str = "") -> None:
        """The NFE of the step count being typed, from the solver's declared rule (pure Python:
        no plan, no tensors); the model takes the value on Enter or when focus leaves."""
        values = self.model.values
        try:
            steps = int(self.steps_box.cleanText())
            info = self._info()
            nfe = None if info.adaptive else info.nfe(steps, values["final"] == "zero", self._solver_options())
        except (ValueError, TypeError, KeyError):
            return
        if nfe is None or values["sigmas"] is not None or values[BUDGET]:
            return
        extra = values["final"] == "denoise"
        self.nfe_label.setText(f"{nfe + extra}   ({steps + extra} steps)")

    def _uses_vp(self) -> bool:
        sched = self.model.value("sigma_schedule") or PROCESSES[self.model.value("process")][0]
        return sched == "vp"

    def _read_schedule(self) -> Optional[str]:
        return self.schedule_box.value() if self.advanced.isChecked() else None

    def _read_scaling(self) -> Optional[str]:
        return self.scaling_box.value() if self.advanced.isChecked() else None

    def _show_solver_options(self) -> None:
        """Show the chosen solver's option rows, with its own help and label."""
        solver = self.model.value("solver")
        active = {o.name: o for o in active_options(solver)}
        if solver != getattr(self, "_shown_solver", None):  # the model may have reset some to the new defaults
            self._shown_solver = solver
            values = self.model.values
            self._quiet(lambda: [self._bindings[option_field(n)].write(values[option_field(n)]) for n in active
                                 if option_field(n) in values and not isinstance(values[option_field(n)], Invalid)])
        for name, widget in self.option_widgets.items():
            self._options_form.setRowVisible(widget, name in active)
            if name in active:
                opt = active[name]
                widget.setToolTip(f"{opt.help} ({opt.bounds_text()})")
                if isinstance(widget, QLineEdit):
                    shown = opt.metavar if opt.kind is tuple else "solver's choice" if opt.optional else ""
                    widget.setPlaceholderText(shown)  # a list option shows its syntax
                label = self._options_form.labelForField(widget)
                if isinstance(label, QLabel):
                    label.setText(opt.title)
        self.no_options.setVisible(not active)

    def _advanced_toggled(self, on: bool) -> None:
        if on and not self._loading:  # start from the process's own pair, so nothing jumps
            sched, scal = PROCESSES[self.model.value("process")]
            self._quiet(lambda: (_set_combo(self.schedule_box, sched), _set_combo(self.scaling_box, scal)))
        self._edited("sigma_schedule")
        self._edited("scaling")

    def _quiet(self, fn: Callable[[], Any]) -> None:
        self._loading = True
        try:
            fn()
        finally:
            self._loading = False

    def _edited(self, field: str) -> None:
        if self._loading:
            return
        self.model.set_value(field, self._bindings[field].read())

    # ------------------------------------------------------------------ model → widgets
    def read_model(self) -> None:
        """Put the model's values into the widgets (after a load or reset)."""
        def fill() -> None:
            values = self.model.values
            self._fill_labels()
            for field, binding in self._bindings.items():
                value = values.get(field)
                if field in values and not isinstance(value, Invalid):
                    binding.write(value)
            advanced = values["sigma_schedule"] is not None or values["scaling"] is not None
            self.advanced.setChecked(advanced)
            sched, scal = PROCESSES[values["process"]]
            _set_combo(self.schedule_box, values["sigma_schedule"] or sched)
            _set_combo(self.scaling_box, values["scaling"] or scal)
        self._quiet(fill)
        self.refresh()

    def _fill_labels(self) -> None:
        den = self.model.denoiser
        self.label_box.clear_items()
        self.label_box.add("unconditional", None)
        names = label_names(den) or []
        for k in range(den.label_dim):
            self.label_box.add(f"{k}: {names[k]}" if k < len(names) else str(k), k)

    def denoiser_changed(self) -> None:
        """The model got a new denoiser: refill its class list and refresh."""
        self._quiet(lambda: (self._fill_labels(), _set_combo(self.label_box, self.model.value("label"))))
        if self.model.value("label") is not None and self.label_box.value() != self.model.value("label"):
            self.model.set_value("label", None)
        self.refresh()

    def set_denoisers(self, names: list[str], recent: list[str], current: str, description: str) -> None:
        """Fill the picker: built-ins, then recent files, then Open…; select ``current``."""
        def fill() -> None:
            box = self.denoiser_box
            box.clear_items()
            for name in names:
                box.add(name, name)
            if recent:
                box.add_separator()
                for path in recent:
                    box.add(_short(path), path, tooltip=path)
            box.add_separator()
            box.add(OPEN_ITEM, OPEN_ITEM, tooltip="A checkpoint (.safetensors), a mixture (.json), an EDM pickle (.pkl) or an array (.npy/.npz)")
            box.add(OPEN_FOLDER_ITEM, OPEN_FOLDER_ITEM)
            if box.find(current) < 0:
                box.insert(0, _short(current), current, tooltip=current)
            _set_combo(box, current)
        self._quiet(fill)
        self.denoiser_info.setText(description)
        self._current_denoiser = current

    def _denoiser_activated(self, index: int) -> None:
        data = self.denoiser_box.value_at(index)
        if data in (OPEN_ITEM, OPEN_FOLDER_ITEM):
            self._quiet(lambda: _set_combo(self.denoiser_box, getattr(self, "_current_denoiser", "")))
            (self.openRequested if data == OPEN_ITEM else self.openFolderRequested).emit()
        elif data:
            self.denoiserPicked.emit(str(data))

    def show_status(self, status: RunStatus) -> None:
        """Draw a run's status: the progress bar (busy when the length is unknown) and the NFE counter."""
        total = status.total if status.total is not None else (0 if status.running else max(1, status.step))
        text = "no run yet" if status.state == "idle" else "step %v / %m"
        if self.progress.format() != text:
            self.progress.setFormat(text)
        if self.progress.maximum() != total:
            self.progress.setRange(0, total)
        self.progress.setValue(min(status.step, total) if total else 0)
        nfe = status.nfe_text()
        if self.nfe_counter.text() != nfe:
            self.nfe_counter.setText(nfe)
        if status.running != self._running:
            self.set_running(status.running)

    def set_running(self, running: bool) -> None:
        self._running = running
        self.cancel_button.setEnabled(running)
        self.refresh()

    def refresh(self) -> None:
        """Errors, enabled states, the NFE and the solver's description."""
        model = self.model
        culprit, error = model.culprit, model.error
        for field, binding in self._bindings.items():
            mine = error is not None and culprit == field
            binding.error.setText(error if mine else "")
            binding.error.setVisible(mine)
            binding.widget.setEnabled(mine or binding.applies())
            binding.widget.setStyleSheet("border: 1px solid #b00020;" if mine else "")
        general = error is not None and culprit not in self._bindings
        self.general_error.setText(error or "")
        self.general_error.setVisible(general)
        use_nfe = bool(model.value(BUDGET))
        self.steps_box.setVisible(not use_nfe)
        self.nfe_box.setVisible(use_nfe)
        self.schedule_box.setEnabled(self.advanced.isChecked())
        self.scaling_box.setEnabled(self.advanced.isChecked())
        self._show_solver_options()
        info = self._info()
        self.solver_info.setText(f"{info.summary}. Order {info.order}; NFE rule: {info.nfe_rule}.")
        if model.config is None:
            self.nfe_label.setText("—")
        elif model.nfe is None:
            self.nfe_label.setText("adaptive (counted while running)")
        else:
            steps = model.plan.n_steps + (model.config.final == "denoise") if model.plan else None
            single = model.config.guidance == 1.0 or (model.config.guide is None and model.config.guidance == 0.0)
            calls = "" if single else "; guided: 2 network calls each"
            self.nfe_label.setText(f"{model.nfe}   ({steps} steps{calls})")
        if model.plan is not None:
            lo, hi = model.plan.sigma_range
            self.sigma_min_edit.setPlaceholderText(f"default {lo:.4g}")
            self.sigma_max_edit.setPlaceholderText(f"default {hi:.4g}")
        sigmas = model.value("sigmas")
        self.grid_clear.setEnabled(sigmas is not None)
        notes = "  ⚠ see tooltip" if sigmas is not None and "\n" in (self.grid_label.toolTip() or "") else ""
        self.grid_label.setText("" if sigmas is None else
                                f"custom: {model.value('schedule_label') or 'σ grid'} ({len(sigmas) - 1} steps){notes}")
        self.sample_button.setEnabled(model.config is not None and not self._running)
        self.sample_button.setToolTip("Run the sampler (Ctrl+R)" if error is None else f"Can't sample: {error}")


def _short(path: str) -> str:
    """A file's name with its folder, short enough for the picker."""
    from pathlib import Path

    p = Path(path)
    return f"{p.name}  ({p.parent.name})" if p.parent.name else p.name
