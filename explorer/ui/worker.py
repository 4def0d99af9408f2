"""Run any generator of events on a worker thread, with cancel and throttled updates.

The sampling engine is a generator; this is the thin wrapper at the edge (in the
manner of superqt's ``GeneratorWorker``). The thread pulls events, calls ``observe``
on every one (cheap bookkeeping such as recording a trajectory), and ``convert`` on
at most ``rate_hz`` of them per second, turning an event into a small picture-ready
payload *on the worker thread*. The GUI thread never sees tensors: a single-shot
``QTimer`` picks the newest payload and emits :attr:`GeneratorWorker.frameReady`, at
most ``rate_hz`` times a second, so a fast run cannot flood the event loop and a slow
one shows every step. The timer is armed only when a payload is waiting: an idle GUI
thread is never woken (each wake-up on a machine with few cores preempts a thread of
torch's parallel team, which then waits for it).

Cancel sets a flag checked after every event, so a run stops within one step; the
generator is then closed (its ``finally`` blocks run).

The thread is started once and kept for every later run of the worker: torch's
OpenMP team belongs to the thread that starts parallel work, and a fresh thread per
run paid for a new team each time (about 7% of a short run on two cores). Call
:meth:`GeneratorWorker.shutdown` when the owner goes away; threads still alive at
interpreter exit are stopped by an ``atexit`` hook.

The worker thread runs Python as well (the solver's loop), so the GUI thread waits for the
interpreter lock each time a slot or a paint enters Python; Python hands the lock over
after ``sys.getswitchinterval()`` (5 ms by default), and a paint entering Python five
times waited up to 27 ms. The worker lowers the interval to ``SWITCH_INTERVAL_S`` when
its thread starts: the handover waits are then within a millisecond.

Drawing has a budget as well as a rate: the worker measures what each frame costs the
GUI thread (the slots, plus the repaint, timed until a zero-delay timer after it runs)
and waits ``cost / max_busy`` before the next one, so the window takes at most about
``max_busy`` of the time (5% by default) however heavy the frame, and the run keeps
its speed on a machine with few cores.
"""
from __future__ import annotations

import atexit
import sys
import threading
import time
from typing import Any, Callable, Iterator, Optional

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from explorer.ui.gui_gc import COLLECTOR

EventSource = Callable[[], Iterator[Any]]
MAX_WAIT_S = 1.0  # a frame at least this often, however slow drawing is
SWITCH_INTERVAL_S = 0.001  # the longest the GUI thread waits for the interpreter lock at each entry into Python
_LIVE_THREADS: list[QThread] = []  # persistent worker threads, stopped at exit


@atexit.register
def _stop_live_threads() -> None:
    for thread in list(_LIVE_THREADS):
        thread.quit()
        thread.wait(5000)
    _LIVE_THREADS.clear()


def error_message(err: BaseException) -> str:
    """A sentence for the user; out-of-memory errors get advice, others their own text."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, MemoryError) or "out of memory" in text.lower():
        return f"Out of memory: {text}. Try a smaller batch, float32 or another device."
    if isinstance(err, ValueError):
        return text
    return f"{type(err).__name__}: {text}"


class _Loop(QObject):
    """Lives on the worker thread; pulls the generator and stores the newest payload."""

    done = Signal(object)  # finish() result
    failed = Signal(str)
    stopped = Signal()

    def __init__(self, owner: "GeneratorWorker", source: EventSource, observe: Optional[Callable[[Any], None]],
                 convert: Optional[Callable[[Any], Any]], finish: Optional[Callable[[], Any]], interval: float) -> None:
        super().__init__()
        self._owner, self._source, self._observe = owner, source, observe
        self._convert, self._finish, self._interval = convert, finish, interval

    @Slot()
    def run(self) -> None:
        generator: Optional[Iterator[Any]] = None
        try:
            generator = self._source()
            last_emit, last = 0.0, None
            for event in generator:
                if self._observe is not None:
                    self._observe(event)
                last = event
                now = time.perf_counter()
                if self._convert is not None and now - last_emit >= self._interval and self._owner._wants_frame(now):
                    self._owner._post(self._convert(event))
                    last_emit, last = now, None
                if self._owner._cancel.is_set():
                    break
            if self._owner._cancel.is_set():
                self.stopped.emit()
                return
            if last is not None and self._convert is not None:
                self._owner._post(self._convert(last))  # the final state is always shown
            self.done.emit(self._finish() if self._finish is not None else None)
        except Exception as err:  # noqa: BLE001 - every failure becomes a message in the window
            self.failed.emit(error_message(err))
        finally:
            close = getattr(generator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - closing after an error must not hide it
                    pass
            self._owner._idle_event.set()


class GeneratorWorker(QObject):
    """Runs one generator at a time on its own (persistent) ``QThread``.

    Signals (all delivered on the GUI thread):
        started(): a run began.
        frameReady(object): the newest converted payload, at most ``rate_hz`` per second.
        finished(object): the run completed; carries ``finish()``'s result.
        failed(str): the run raised; carries a user-readable message.
        cancelled(): the run stopped because :meth:`cancel` was called.
        idle(): the run is over (after any of the three above); a new run may start.
    """

    _go = Signal()  # queued to the worker thread: start the loop object connected to it
    _posted = Signal()  # emitted on the worker thread, queued here: a payload is waiting
    started = Signal()
    frameReady = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    idle = Signal()

    def __init__(self, parent: Optional[QObject] = None, rate_hz: float = 60.0, max_busy: float = 0.05) -> None:
        super().__init__(parent)
        self._interval = 1.0 / rate_hz
        self._max_busy = max_busy
        self._cost = 0.0  # smoothed GUI seconds per frame
        self._next_at = 0.0  # perf_counter before which no frame is drawn
        self._frame_started: Optional[float] = None  # a drawn frame whose cost is being timed
        self._notified = False  # a _posted signal is on its way
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._latest: Any = None
        self._has_new = False
        self._thread: Optional[QThread] = None
        self._idle_event = threading.Event()
        self._idle_event.set()
        self._loop: Optional[_Loop] = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._flush)
        self._posted.connect(self._arm)

    # ------------------------------------------------------------------ public
    def is_running(self) -> bool:
        return self._loop is not None

    def start(self, source: EventSource, observe: Optional[Callable[[Any], None]] = None,
              convert: Optional[Callable[[Any], Any]] = None, finish: Optional[Callable[[], Any]] = None) -> None:
        """Start ``source()`` on a new thread; raises RuntimeError if a run is going on.

        ``source`` is called on the worker thread too, so building the generator (and
        any error it raises) happens off the GUI thread.
        """
        if self._loop is not None:
            raise RuntimeError("A run is already going on; cancel it first.")
        self._cancel.clear()
        with self._lock:
            self._latest, self._has_new = None, False
        self._next_at, self._frame_started = 0.0, None
        if self._thread is None:
            if sys.getswitchinterval() > SWITCH_INTERVAL_S:
                sys.setswitchinterval(SWITCH_INTERVAL_S)  # see the module docstring
            COLLECTOR.acquire()  # cyclic garbage is collected on the GUI thread while this thread lives
            self._thread = QThread()
            self._thread.setObjectName("explorer-worker")
            self._thread.start()
            _LIVE_THREADS.append(self._thread)
        loop = _Loop(self, source, observe, convert, finish, self._interval)
        loop.moveToThread(self._thread)
        loop.done.connect(self._on_done)
        loop.failed.connect(self._on_failed)
        loop.stopped.connect(self._on_stopped)
        self._loop = loop
        self._idle_event.clear()
        self._go.connect(loop.run)  # a queued call: the loop lives on the worker thread
        self._go.emit()
        self._go.disconnect(loop.run)
        self.started.emit()

    def cancel(self) -> None:
        """Ask the run to stop after the step in progress."""
        self._cancel.set()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the run in progress (if any) has left the generator; True when it has."""
        return self._idle_event.wait(timeout_ms / 1000)

    def shutdown(self) -> None:
        """Cancel any run and stop the thread (the owner is going away)."""
        self.cancel()
        self.wait()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.quit()
            thread.wait()
            if thread in _LIVE_THREADS:
                _LIVE_THREADS.remove(thread)
            COLLECTOR.release()

    # ------------------------------------------------------------------ internals
    def _wants_frame(self, now: float) -> bool:
        """Called on the worker thread: convert only what the GUI will draw (it took the
        last frame, and its drawing budget allows the next one about now)."""
        with self._lock:
            if self._has_new:
                return False
        return now >= self._next_at - self._interval

    def _post(self, payload: Any) -> None:
        """Called on the worker thread: replace the pending payload (older ones are dropped)."""
        with self._lock:
            self._latest, self._has_new = payload, True
            notify, self._notified = not self._notified, True
        if notify:
            self._posted.emit()

    @Slot()
    def _arm(self) -> None:
        """A payload waits: draw it when the budget allows (at once if it already does)."""
        if self._loop is not None and not self._timer.isActive():
            delay = max(0.0, self._next_at - time.perf_counter())
            self._timer.start(int(round(1000 * delay)))

    @Slot()
    def _flush(self, force: bool = False) -> None:
        with self._lock:
            payload, fresh = self._latest, self._has_new
            self._has_new = self._notified = False
        if not fresh:
            return
        start = time.perf_counter()
        self.frameReady.emit(payload)
        if not force:
            self._frame_started = start
            self._next_at = start + self._interval  # at most rate_hz, until the cost is known
            QTimer.singleShot(0, self._frame_drawn)  # runs after the repaint the frame caused

    @Slot()
    def _frame_drawn(self) -> None:
        if self._frame_started is None:
            return
        now = time.perf_counter()
        cost, self._frame_started = now - self._frame_started, None
        self._cost = cost if self._cost == 0.0 else 0.7 * self._cost + 0.3 * cost
        self._next_at = max(self._next_at, now + min(self._cost / self._max_busy, MAX_WAIT_S))

    def _end(self) -> None:
        self._timer.stop()
        self._flush(force=True)  # the last state is always drawn
        self._frame_started = None
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.deleteLater()

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        self._end()
        self.finished.emit(result)
        self.idle.emit()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._end()
        self.failed.emit(message)
        self.idle.emit()

    @Slot()
    def _on_stopped(self) -> None:
        self._end()
        self.cancelled.emit()
        self.idle.emit()
