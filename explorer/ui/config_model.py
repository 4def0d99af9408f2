"""The control panel's Qt face of the run configuration.

The values, their check and the field to blame live in the Qt-free
:class:`~explorer.session.run.RunSession`, which the window's :class:`~explorer.ui.session.Session`
reads too; this adapter holds nothing of its own (so the panel and the tabs can never
disagree about the denoiser or the config): it reads and writes through the run session
and turns its notifications into the signals the panel connects to.
"""
from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QObject, Signal

from explorer.core.config import RunConfig
from explorer.session.run import RunSession
from explorer.ui.session import read_through


class ConfigModel(QObject):
    """Raw control values + the validated config they make, read through one :class:`RunSession`.

    Signals:
        changed(): any value, the validity or the plan changed; read the properties.
        valuesReplaced(): values were replaced from outside the controls (load, reset, a
            batch that followed a new denoiser): controls must re-read them.
    """

    changed = Signal()
    valuesReplaced = Signal()

    def __init__(self, state: RunSession, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.state = state
        state.observe("values", self.changed.emit)
        state.observe("replaced", self.valuesReplaced.emit)

    # ------------------------------------------------------------------ state (the run session's)
    values = read_through("values", "A copy of the raw values.")
    config = read_through("config", "The valid config, or None while the controls make an impossible combination.")
    plan = read_through("plan")
    nfe = read_through("nfe")
    error = read_through("error")
    culprit = read_through("culprit", "The field whose edit made the combination impossible (None when valid).")
    denoiser = read_through("denoiser")

    def value(self, name: str) -> Any:
        return self.state.value(name)

    # ------------------------------------------------------------------ edits (through the run session)
    def set_value(self, name: str, value: Any) -> None:
        self.state.set_value(name, value)

    def load(self, config: RunConfig) -> None:
        """Replace every value (a loaded or reset configuration)."""
        self.state.load(config)
