"""The tabs' Qt face of the working state: the denoiser, the run configuration, the last run.

Views never call each other; they observe this object. The Run tab and the Compare tab
both read the current denoiser and configuration from here and listen to its signals,
so changing the denoiser in one place updates every view. The state itself is the
Qt-free :class:`~explorer.session.run.RunSession`, shared with the control panel's
:class:`~explorer.ui.config_model.ConfigModel`; this adapter keeps no copy of it.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.trajectory import Trajectory
from explorer.session.run import RunSession
from explorer.session.status import RunStatus


def read_through(name: str, doc: str = "") -> property:
    """A read-only property that answers with the run session's attribute ``name``: the Qt
    faces keep no copy of their own, so they can never disagree with it."""
    return property(lambda self: getattr(self.state, name), doc=doc or f"The run session's {name}.")


class Session(QObject):
    """One user's working state, read and written through one :class:`RunSession`.

    Signals:
        denoiserChanged(object): the new :class:`Denoiser` (its spec is ``denoiser_spec``).
        configChanged(object): the new last valid :class:`RunConfig`.
        runFinished(object): the :class:`Trajectory` of the run that just completed.
        statusChanged(object): the Run tab's :class:`RunStatus` (the progress bar, the NFE
            counter and the step slider draw it; nobody writes into their widgets).
    """

    denoiserChanged = Signal(object)
    configChanged = Signal(object)
    runFinished = Signal(object)
    statusChanged = Signal(object)

    def __init__(self, state: RunSession, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.state = state
        state.observe("denoiser", self.denoiserChanged.emit)
        state.observe("config", self.configChanged.emit)
        state.observe("run", self.runFinished.emit)
        state.observe("status", self.statusChanged.emit)

    denoiser = read_through("denoiser")
    denoiser_spec = read_through("denoiser_spec", "What the user picked: a built-in name or a path (stored in settings and exports).")
    config = read_through("last_config", "The last valid configuration (the panel's while it is valid).")
    trajectory = read_through("trajectory", "The last finished run, or None before the first one completes.")
    status = read_through("status")

    def set_status(self, status: RunStatus) -> None:
        self.state.set_status(status)

    def set_denoiser(self, denoiser: Denoiser, spec: str) -> None:
        """Switch denoiser; the old run no longer matches it, so it is forgotten."""
        self.state.set_denoiser(denoiser, spec)

    def set_config(self, config: RunConfig) -> None:
        """Make ``config`` the configuration (the control panel shows its values)."""
        self.state.set_config(config)

    def set_trajectory(self, trajectory: Trajectory) -> None:
        self.state.set_trajectory(trajectory)
