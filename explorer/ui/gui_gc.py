"""Python's cyclic garbage collection on the GUI thread only, while worker threads exist.

Why: the collector runs on whichever thread allocates past its threshold. When that is a
worker thread and the garbage holds Qt objects (a closed window's items, a dropped plot),
their destructors run off the GUI thread and can deadlock with it. Seen in the test suite:
the worker inside ``gc`` → ``~QObject`` waiting for the interpreter lock, the GUI thread
holding that lock inside another ``~QObject`` waiting for Qt's. So while any worker thread
lives, automatic collection is off and a timer on the GUI thread collects, generation by
generation, with the thresholds Python would use (pyqtgraph's ``GarbageCollector`` does the
same for the same reason). Objects freed by reference counting are not affected.
"""
from __future__ import annotations

import gc
from typing import Optional

from PySide6.QtCore import QTimer

INTERVAL_MS = 500


class _GuiCollector:
    """Reference-counted: the first holder turns automatic collection off, the last one back on."""

    def __init__(self) -> None:
        self.holders = 0
        self.was_enabled = True
        self.timer: Optional[QTimer] = None

    def acquire(self) -> None:
        """Called on the GUI thread when a worker thread starts."""
        if self.holders == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
            if self.timer is None:
                self.timer = QTimer()
                self.timer.timeout.connect(collect_due)
            self.timer.start(INTERVAL_MS)
        self.holders += 1

    def release(self) -> None:
        """Called on the GUI thread when a worker thread has stopped."""
        if self.holders == 0:
            return
        self.holders -= 1
        if self.holders == 0:
            if self.timer is not None:
                self.timer.stop()
            if self.was_enabled:
                gc.enable()


def collect_due() -> None:
    """Collect the generations whose counts passed Python's thresholds (on the GUI thread)."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    for generation in range(3):
        if counts[generation] <= thresholds[generation]:
            break
        gc.collect(generation)


COLLECTOR = _GuiCollector()
