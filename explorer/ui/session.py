"""The state the app's tabs share: the denoiser, the run configuration, the last run.

Views never call each other; they observe this object. The Run tab and the Compare tab
both read the current denoiser and configuration from here and listen to its signals,
so changing the denoiser in one place updates every view.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.trajectory import Trajectory
from explorer.session.status import RunStatus


class Session(QObject):
    """One user's working state: a denoiser (and how it was named), a config, a result.

    Signals:
        denoiserChanged(object): the new :class:`Denoiser` (its spec is ``denoiser_spec``).
        configChanged(object): the new valid :class:`RunConfig`.
        runFinished(object): the :class:`Trajectory` of the run that just completed.
        statusChanged(object): the Run tab's :class:`RunStatus` (the progress bar, the NFE
            counter and the step slider draw it; nobody writes into their widgets).
    """

    denoiserChanged = Signal(object)
    configChanged = Signal(object)
    runFinished = Signal(object)
    statusChanged = Signal(object)

    def __init__(self, denoiser: Denoiser, spec: str, config: Optional[RunConfig] = None, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._denoiser = denoiser
        self._spec = spec
        self._config = config or RunConfig()
        self._trajectory: Optional[Trajectory] = None
        self._status = RunStatus()

    @property
    def denoiser(self) -> Denoiser:
        return self._denoiser

    @property
    def denoiser_spec(self) -> str:
        """What the user picked: a built-in name or a path (stored in settings and exports)."""
        return self._spec

    @property
    def config(self) -> RunConfig:
        return self._config

    @property
    def trajectory(self) -> Optional[Trajectory]:
        """The last finished run, or None before the first one completes."""
        return self._trajectory

    @property
    def status(self) -> RunStatus:
        return self._status

    def set_status(self, status: RunStatus) -> None:
        if status != self._status:
            self._status = status
            self.statusChanged.emit(status)

    def set_denoiser(self, denoiser: Denoiser, spec: str) -> None:
        """Switch denoiser; the old run no longer matches it, so it is forgotten."""
        self._denoiser, self._spec = denoiser, spec
        self._trajectory = None
        self.denoiserChanged.emit(denoiser)

    def set_config(self, config: RunConfig) -> None:
        if config != self._config:
            self._config = config
            self.configChanged.emit(config)

    def set_trajectory(self, trajectory: Trajectory) -> None:
        self._trajectory = trajectory
        self.runFinished.emit(trajectory)
