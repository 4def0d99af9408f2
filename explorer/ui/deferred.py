"""GUI-thread work cut into short slots, run in order, one slot per turn of the event loop.

Why: the rule is that every slot returns within 16 ms. A handler with more to draw than
that (a finished run: the record's frame, the slider, the status; a finished Compare
column: its curve in each overlay) draws what the user must see at once and queues the
rest here as steps. Each step runs in its own zero-delay timer slot, so paints and key
presses are served between steps, and a step queued with ``repeat`` runs again as long
as it returns True, to do a long job one piece at a time. Steps run first in, first out, so a step queued after the
drawing (say, "the run has ended": a signal scripts and tests wait for) runs after it; a
step queued by a running step runs next, as a part of the work that queued it.
"""
from __future__ import annotations

import sys
from collections import deque
from typing import Callable, Hashable, Optional

from PySide6.QtCore import QObject, QTimer

Step = Callable[[], object]  # queued with repeat=True: returns True to run again (more pieces to do)


class Deferred(QObject):
    """A first-in-first-out queue of steps for the GUI thread (see the module docstring)."""

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._steps: deque[tuple[Optional[Hashable], Step, bool]] = deque()  # (key, step, repeat)
        self._spawned: Optional[list[tuple[Optional[Hashable], Step, bool]]] = None  # queued by the step running now
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._run_one)

    def add(self, step: Step, key: Optional[Hashable] = None, repeat: bool = False) -> None:
        """Queue ``step`` (with ``repeat``, to run again while it returns True). With a ``key``
        already waiting nothing is added: that step reads the state when it runs, so one run
        does what both would have done."""
        waiting = list(self._steps)[1:] if self._spawned is not None else list(self._steps)  # not the one running
        if key is not None and any(entry[0] == key for entry in (*waiting, *(self._spawned or ()))):
            return
        if self._spawned is not None:
            self._spawned.append((key, step, repeat))
            return
        self._steps.append((key, step, repeat))
        if not self._timer.isActive():
            self._timer.start()

    def pending(self) -> bool:
        return bool(self._steps)

    def drop(self) -> None:
        """Forget every queued step (the views they would draw are going away)."""
        self._steps.clear()
        self._timer.stop()

    def flush(self) -> None:
        """Run every queued step now, each to its end (for closing and for scripts)."""
        self._timer.stop()
        while self._steps:
            self._run_one(restart=False)

    def _run_one(self, restart: bool = True) -> None:
        if not self._steps:
            return
        _, step, repeat = self._steps[0]
        again = False
        self._spawned = []
        try:
            again = step() is True and repeat
        except Exception:  # noqa: BLE001 - reported as an exception out of a slot is; the queue goes on
            sys.excepthook(*sys.exc_info())
        finally:  # a step that raised is dropped
            spawned, self._spawned = self._spawned, None
            at = 0
            if self._steps and self._steps[0][1] is step:
                if again:
                    at = 1
                else:
                    self._steps.popleft()
            for k, item in enumerate(spawned):
                self._steps.insert(at + k, item)
            if restart and self._steps:
                self._timer.start()
