"""The Run side's working state without Qt: the denoiser, the configuration, the last run, its status.

Why one object: the control panel edits the configuration field by field, the Compare tab
takes it as the template of new columns, the main window starts runs from it and the
status bar shows the σ range it plans. When the panel's model and the window's session
each kept a denoiser and a config, every switch had to be copied from one to the other by
hand, and a forgotten copy left a view on the old denoiser. Here they are held **once**;
the Qt adapters (:class:`explorer.ui.config_model.ConfigModel` for the panel,
:class:`explorer.ui.session.Session` for the tabs) keep no state of their own: they read
and write through this object and turn its notifications into signals.

Notifications (:meth:`RunSession.observe`), each called on the thread that made the edit:

- ``"denoiser"`` (denoiser): another denoiser is current; the old run and status were dropped.
- ``"values"`` (): a value, the validity or the plan changed (read the properties).
- ``"replaced"`` (): values changed from outside the controls (a load, a reset, a batch that
  followed a new denoiser): controls must re-read them.
- ``"config"`` (config): the last valid configuration changed.
- ``"run"`` (trajectory): a run finished.
- ``"status"`` (status): the run's :class:`~explorer.session.status.RunStatus` changed.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from explorer.core.config import RunConfig
from explorer.core.defaults import default_batch
from explorer.core.denoiser import Denoiser
from explorer.core.solvers import Option, all_options
from explorer.core.solvers.context import Plan
from explorer.core.trajectory import Trajectory
from explorer.session.status import RunStatus
from explorer.session.values import OPTION_PREFIX, Checked, Invalid, active_options, check, option_field, values_of

EVENTS = ("denoiser", "values", "replaced", "config", "run", "status")


class RunSession:
    """One user's denoiser (and how it was named), the panel's values and their check, the last run."""

    def __init__(self, denoiser: Denoiser, spec: str, config: Optional[RunConfig] = None) -> None:
        self._listeners: dict[str, list[Callable[..., Any]]] = {event: [] for event in EVENTS}
        self._denoiser, self._spec = denoiser, spec
        config = config or RunConfig()
        self._values = values_of(config)
        self._declared = self._declarations()  # option name → the declaration its value was set under
        self._edits: list[str] = []  # fields edited since the last valid state, newest last
        self._culprit: Optional[str] = None
        self._checked = check(self._values, denoiser)
        if self._checked.config is None:  # a remembered config that no longer fits: fall back
            self._values = values_of(RunConfig(batch=config.batch))
            self._checked = check(self._values, denoiser)
        self._good = dict(self._values)  # the last values that made a valid config
        self._last = self._checked.config or RunConfig()
        self._trajectory: Optional[Trajectory] = None
        self._status = RunStatus()

    # ------------------------------------------------------------------ observing
    def observe(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` after every ``event`` (see the module docstring for the events)."""
        if event not in self._listeners:
            raise ValueError(f"A run session's events are {', '.join(EVENTS)} (got {event!r}).")
        self._listeners[event].append(callback)

    def _notify(self, event: str, *args: Any) -> None:
        for callback in list(self._listeners[event]):
            callback(*args)

    # ------------------------------------------------------------------ reading
    @property
    def denoiser(self) -> Denoiser:
        return self._denoiser

    @property
    def denoiser_spec(self) -> str:
        """What the user picked: a built-in name or a path (stored in settings and exports)."""
        return self._spec

    @property
    def values(self) -> dict[str, Any]:
        """A copy of the panel's raw values (an :class:`Invalid` where a control holds no value)."""
        return dict(self._values)

    def value(self, name: str) -> Any:
        return self._values[name]

    @property
    def checked(self) -> Checked:
        return self._checked

    @property
    def config(self) -> Optional[RunConfig]:
        """The valid config the values make, or None while they make an impossible combination."""
        return self._checked.config

    @property
    def last_config(self) -> RunConfig:
        """The last valid config (never None: the Compare tab's template while the panel is invalid)."""
        return self._last

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
    def trajectory(self) -> Optional[Trajectory]:
        """The last finished run, or None before the first one completes (or after a switch)."""
        return self._trajectory

    @property
    def status(self) -> RunStatus:
        return self._status

    # ------------------------------------------------------------------ edits
    def set_value(self, name: str, value: Any) -> None:
        """One control changed; revalidate and find the field to blame if invalid."""
        if name not in self._values and not name.startswith(OPTION_PREFIX):
            raise KeyError(name)
        if name in self._values and self._values[name] == value and type(self._values[name]) is type(value):
            return
        self._values[name] = value
        if name == "solver":
            self._adopt_solver_options()
        if name in self._edits:
            self._edits.remove(name)
        self._edits.append(name)
        self._revalidate()

    def load(self, config: RunConfig) -> None:
        """Replace every value (a loaded or reset configuration)."""
        self._values = values_of(config)
        self._declared = self._declarations()
        self._edits.clear()
        self._notify("replaced")
        self._revalidate()

    def set_config(self, config: RunConfig) -> None:
        """Make ``config`` the configuration: its values replace the panel's (nothing when it already is)."""
        if config != self._checked.config:
            self.load(config)

    def set_denoiser(self, denoiser: Denoiser, spec: str) -> None:
        """Switch denoiser: the old run and its status go, an untouched batch follows the kind of data."""
        follow_batch = self._values["batch"] == default_batch(self._denoiser)
        self._denoiser, self._spec = denoiser, spec
        self._trajectory = None
        self._status = RunStatus()  # the old run's step and NFE are not this denoiser's
        batch = default_batch(denoiser)
        replaced = follow_batch and self._values["batch"] != batch
        if replaced:  # a cloud of points for a 2-D toy, a grid of images for an image model
            self._values["batch"] = batch
        config_changed = self._recheck()  # before anyone hears of the switch: they read the new plan
        self._notify("status", self._status)
        self._notify("denoiser", denoiser)
        if replaced:
            self._notify("replaced")
        self._announce(config_changed)

    def set_trajectory(self, trajectory: Trajectory) -> None:
        self._trajectory = trajectory
        self._notify("run", trajectory)

    def set_status(self, status: RunStatus) -> None:
        if status != self._status:
            self._status = status
            self._notify("status", status)

    # ------------------------------------------------------------------ validation
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
        self._announce(self._recheck())

    def _recheck(self) -> bool:
        """Check the values against the denoiser; True when the last valid config changed."""
        self._checked = check(self._values, self._denoiser)
        last = self._last
        if self._checked.config is not None:
            self._good = dict(self._values)
            self._edits.clear()
            self._culprit = None
            self._last = self._checked.config
        else:
            self._culprit = self._blame()
        return self._last != last

    def _announce(self, config_changed: bool) -> None:
        self._notify("values")
        if config_changed:
            self._notify("config", self._last)

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
