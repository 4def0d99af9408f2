"""The state of one background run, as every view that shows progress reads it.

One :class:`RunStatus` value describes the run: idle, running step k of n with NFE so
far, finished, failed or cancelled. Views draw it (progress bar, NFE counter, slider);
nobody writes into another view's widgets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

STATES = ("idle", "running", "finished", "failed", "cancelled")


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands. ``total`` is None for runs of unknown length (adaptive solvers)."""

    state: str = "idle"
    step: int = 0
    total: Optional[int] = None
    nfe: int = 0
    nfe_total: Optional[int] = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"A run's state is one of {', '.join(STATES)} (got {self.state!r}).")

    @property
    def running(self) -> bool:
        return self.state == "running"

    def advance(self, step: int, nfe: int) -> "RunStatus":
        return dataclasses.replace(self, state="running", step=step, nfe=nfe)

    def end(self, state: str, message: str = "") -> "RunStatus":
        return dataclasses.replace(self, state=state, message=message)

    def nfe_text(self) -> str:
        """'NFE 12 / 35' while a run of known cost goes on, else 'NFE 12'."""
        total = f" / {self.nfe_total}" if self.nfe_total and self.running else ""
        return f"NFE {self.nfe}{total}"


def starting(total: Optional[int], nfe_total: Optional[int], message: str = "") -> RunStatus:
    """The status of a run that is about to take its first step."""
    return RunStatus("running", 0, total, 0, nfe_total, message)
