"""The run-configuration model behind the control panel.

The panel edits one field at a time; the model keeps the raw values, rebuilds a
:class:`RunConfig` and its :class:`Plan` after every edit, and says whether the
combination is possible. When it is not, the model names the field to blame (the
edit that broke it, found by undoing edits one at a time) and the core's sentence,
so the panel can show the reason at that control and disable Sample. Nothing here
raises: every ValueError becomes state.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from PySide6.QtCore import QObject, Signal

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.guidance import check_fits
from explorer.core.sampling import make_plan, resolve_device
from explorer.core.solvers import SOLVERS, Option, all_options
from explorer.core.solvers.context import Plan

FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "options")
BUDGET = "use_nfe"  # the panel's extra field: steps (False) or an NFE budget (True)
OPTION_PREFIX = "options."  # the panel's field of a solver option: "options.churn"


def option_field(name: str) -> str:
    return OPTION_PREFIX + name


def active_options(solver: Any) -> tuple[Option, ...]:
    """The options of the chosen solver (none for an unknown name)."""
    info = SOLVERS.get(solver) if isinstance(solver, str) else None
    return info.options if info is not None else ()


@dataclass(frozen=True)
class Invalid:
    """A control's text that is not a value at all (e.g. letters in σ_min)."""

    message: str


@dataclass(frozen=True)
class Checked:
    """The outcome of validating a set of values against a denoiser."""

    config: Optional[RunConfig]
    plan: Optional[Plan]
    nfe: Optional[int]
    error: Optional[str]


def values_of(config: RunConfig) -> dict[str, Any]:
    """The panel's values for a config (the budget mode follows whether nfe is set).

    Every option any solver declares has a value (its default where the config's solver
    lacks it), so that switching solvers in the panel never meets a missing field.
    """
    values = {name: getattr(config, name) for name in FIELDS}
    for name, opt in all_options().items():
        values[option_field(name)] = opt.default
    for opt in active_options(config.solver):
        values[option_field(opt.name)] = config.options.get(opt.name, opt.default)
    values[BUDGET] = config.nfe is not None
    if values["steps"] is None:
        values["steps"] = 18
    if values["nfe"] is None:
        values["nfe"] = 35
    return values


def check(values: dict[str, Any], denoiser: Denoiser) -> Checked:
    """Build the config and plan from panel values; never raises."""
    options = {o.name: values.get(option_field(o.name), o.default) for o in active_options(values.get("solver"))}
    for value in [values[name] for name in FIELDS + (BUDGET,) if name in values] + list(options.values()):
        if isinstance(value, Invalid):
            return Checked(None, None, None, value.message)
    kwargs = {name: values[name] for name in FIELDS}
    kwargs["options"] = options
    if values.get(BUDGET):
        kwargs["steps"] = None
    else:
        kwargs["nfe"] = None
    try:
        config = RunConfig(**kwargs)
        resolve_device(config.device)
        if config.label is not None and denoiser.label_dim and config.label >= denoiser.label_dim:
            raise ValueError(f"Class {config.label} is out of range: the denoiser has {denoiser.label_dim} classes.")
        check_fits(denoiser, config.guidance, config.guide, config.label)
        plan = make_plan(denoiser, config)
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as err:
        return Checked(None, None, None, str(err))
    return Checked(config, plan, plan.nfe, None)


class ConfigModel(QObject):
    """Raw control values + the validated config they make.

    Signals:
        changed(): any value, the validity or the plan changed; read the properties.
        valuesReplaced(): every value was replaced (load/reset): controls must re-read them.
    """

    changed = Signal()
    valuesReplaced = Signal()

    def __init__(self, config: RunConfig, denoiser: Denoiser, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._denoiser = denoiser
        self._values = values_of(config)
        self._declared = self._declarations()  # option name → the declaration its value was set under
        self._good = dict(self._values)  # the last values that made a valid config
        self._edits: list[str] = []  # fields edited since the last valid state, newest last
        self._checked = check(self._values, denoiser)
        self._culprit: Optional[str] = None
        if self._checked.config is None:  # a remembered config that no longer fits: fall back
            self._values = values_of(RunConfig(batch=config.batch))
            self._good = dict(self._values)
            self._checked = check(self._values, denoiser)

    # ------------------------------------------------------------------ state
    @property
    def values(self) -> dict[str, Any]:
        return dict(self._values)

    def value(self, name: str) -> Any:
        return self._values[name]

    @property
    def config(self) -> Optional[RunConfig]:
        """The valid config, or None while the controls make an impossible combination."""
        return self._checked.config

    @property
    def plan(self) -> Optional[Plan]:
        return self._checked.plan

    @property
    def nfe(self) -> Optional[int]:
        return self._checked.nfe

    @property
    def error(self) -> Optional[str]:
        return self._checked.error

    @property
    def culprit(self) -> Optional[str]:
        """The field whose edit made the combination impossible (None when valid)."""
        return self._culprit

    @property
    def denoiser(self) -> Denoiser:
        return self._denoiser

    # ------------------------------------------------------------------ edits
    def set_value(self, name: str, value: Any) -> None:
        """One control changed; revalidate and find the field to blame if invalid."""
        if name not in self._values and not name.startswith(OPTION_PREFIX):
            raise KeyError(name)
        if self._values[name] == value and type(self._values[name]) is type(value):
            return
        self._values[name] = value
        if name == "solver":
            self._adopt_solver_options()
        if name in self._edits:
            self._edits.remove(name)
        self._edits.append(name)
        self._revalidate()

    def set_denoiser(self, denoiser: Denoiser) -> None:
        self._denoiser = denoiser
        self._revalidate()

    def load(self, config: RunConfig) -> None:
        """Replace every value (a loaded or reset configuration)."""
        self._values = values_of(config)
        self._declared = self._declarations()
        self._edits.clear()
        self.valuesReplaced.emit()
        self._revalidate()

    def _declarations(self) -> dict[str, Option]:
        found = dict(all_options())
        found.update({o.name: o for o in active_options(self._values["solver"])})
        return found

    def _adopt_solver_options(self) -> None:
        """A new solver: an option it declares differently from the value's declaration
        (another default or meaning under the same name) starts at its own default."""
        for opt in active_options(self._values["solver"]):
            if self._declared.get(opt.name) != opt:
                self._values[option_field(opt.name)] = opt.default
                self._declared[opt.name] = opt

    def _revalidate(self) -> None:
        self._checked = check(self._values, self._denoiser)
        if self._checked.config is not None:
            self._good = dict(self._values)
            self._edits.clear()
            self._culprit = None
        else:
            self._culprit = self._blame()
        self.changed.emit()

    def _blame(self) -> Optional[str]:
        """The newest edit whose undoing alone makes the values valid again."""
        for name in reversed(self._edits):
            if isinstance(self._values[name], Invalid):
                return name
        for name in reversed(self._edits):
            trial = dict(self._values)
            trial[name] = self._good.get(name)
            if check(trial, self._denoiser).config is not None:
                return name
        return self._edits[-1] if self._edits else None
