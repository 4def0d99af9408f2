"""The thin Qt face of :class:`~explorer.session.comparison.ComparisonSession`.

The session holds the state and does no Qt; this adapter turns its edits into signals
the Compare tab's views observe, and carries results prepared on the worker thread
over to the GUI thread (:meth:`ComparisonModel.deliver` may be called from any thread;
the commit runs on the GUI thread through a queued signal), so each finished column
shows as soon as it is done.

Signals:
    columnsChanged(): columns, seed, batch or model changed (results were dropped).
    resultsChanged(): a run, the reference or their errors arrived.
    sweepChanged(): the error-vs-NFE sweep changed.
    statusChanged(object): the :class:`~explorer.session.status.RunStatus` of the tab's job.
    problem(str): an edit was refused (the ValueError's sentence).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from PySide6.QtCore import QObject, Qt, Signal

from explorer.core.config import RunConfig
from explorer.core.sweep import SweepResult
from explorer.session.comparison import ComparisonSession, PreparedColumn, PreparedReference
from explorer.session.status import RunStatus


class ComparisonModel(QObject):
    columnsChanged = Signal()
    resultsChanged = Signal()
    sweepChanged = Signal()
    statusChanged = Signal(object)
    problem = Signal(str)
    _delivered = Signal(object)

    def __init__(self, session: ComparisonSession, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.status = RunStatus()
        self._delivered.connect(self._commit, Qt.QueuedConnection)

    # ------------------------------------------------------------------ edits (GUI thread)
    def edit(self, method: str, *args: Any) -> bool:
        """Call the session's edit ``method``; a refused edit emits :attr:`problem` and returns False."""
        try:
            getattr(self.session, method)(*args)
        except ValueError as err:
            self.problem.emit(str(err))
            return False
        self.columnsChanged.emit()
        return True

    def add(self, config: RunConfig) -> bool:
        return self.edit("add", config)

    def set(self, index: int, config: RunConfig) -> bool:
        return self.edit("set", index, config)

    def remove(self, index: int) -> bool:
        return self.edit("remove", index)

    def set_columns(self, columns: Sequence[RunConfig], seed: int, batch: int, rtol: Optional[float] = None) -> bool:
        return self.edit("set_columns", columns, seed, batch, rtol)

    def set_reference_rtol(self, rtol: float) -> bool:
        return self.edit("set_reference_rtol", rtol)

    def set_latents(self, seed: int, batch: int) -> bool:
        return self.edit("set_latents", seed, batch)

    def set_model(self, model: str, shape: Sequence[int], data_range: tuple[float, float]) -> None:
        self.edit("set_model", model, shape, data_range)
        self.sweepChanged.emit()

    def set_sweep(self, sweep: Optional[SweepResult]) -> None:
        self.session.set_sweep(sweep)
        self.sweepChanged.emit()

    def set_status(self, status: RunStatus) -> None:
        self.status = status
        self.statusChanged.emit(status)

    # ------------------------------------------------------------------ results (any thread → GUI thread)
    def deliver(self, prepared: PreparedColumn | PreparedReference) -> None:
        """Hand a result prepared on the worker to the GUI thread (thread-safe)."""
        self._delivered.emit(prepared)

    def _commit(self, prepared: PreparedColumn | PreparedReference) -> None:
        if self.session.commit(prepared):
            self.resultsChanged.emit()
