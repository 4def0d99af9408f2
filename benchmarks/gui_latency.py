"""How long does the GUI thread stay busy? Every event handler timed, while running and scrubbing.

The rule (developers' guide): the GUI thread only draws, and every slot returns within
16 ms. This benchmark times every event the GUI thread delivers (a ``QApplication`` whose
``notify`` is wrapped: queued signals, timers, paints, key presses, so every slot the
window runs), outermost deliveries only, and reports per phase the count, median, 99th
percentile and worst, and a stall histogram (how many handlers took ≥ 16, 50, 100, 500,
1000 ms).

Phases, for the Run tab (batch 16 and 64) and the Compare tab (1 and 4 columns × batch
16 and 64), on a 3×32×32 analytic Gaussian mixture and 19 steps:

- ``run``: from the start of a run to its end (the Compare tab: Run all);
- ``reference``: the Compare tab's reference run;
- ``scrub``: Right-arrow key presses on the step slider, one at a time, each followed by
  the events it caused (the Compare tab: in the x₀ view and in the difference view).

    python benchmarks/gui_latency.py [--batches 16,64] [--columns 1,4] [--steps 19] [--components 64]
                                     [--threads 1] [--by-handler 4] [--profile 16]

``--by-handler MS`` adds, per phase, every kind of handler that took at least MS ms: its
event type and the widget it went to (with the nearest of this project's views above
it), how many times it ran that long, its worst time and that handler's CPU time on the
GUI thread (a wall time far above it was spent waiting: for a core, or for the GIL).
``--profile MS`` also profiles every handler and prints, to stderr, the functions that
handlers of at least MS ms spent their time in (profiling slows every handler down:
diagnose with it, measure without). Each window is left STARTED_MS after it is shown,
and frozen as the app freezes its start-up objects, before a phase is recorded.

Offscreen unless ``$DISPLAY`` is set. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PySide6.QtCore import QEvent, QEventLoop, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QKeyEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from explorer.core.analytic import GMMDenoiser  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.ui import app as app_module  # noqa: E402

STARTED_MS = 1000  # after a window is shown, before recording: its first layout and paint are no run's handlers

STALL_MS = (16, 50, 100, 500, 1000)
COLUMN_SOLVERS = ("heun", "euler", "dpm-solver++2m", "dpm-solver-2")


def handler_name(receiver, event) -> str:
    """What a handler was: the event's type, the receiver's class and the nearest view of this
    project (or of pyqtgraph) above it, e.g. ``Paint → QWidget in PlotWidget in SigmaOverlay``."""
    try:
        kind = event.type().name
    except AttributeError:  # an event type PySide has no name for
        kind = f"type {int(event.type())}"
    names = [type(receiver).__name__]
    obj = receiver.parent() if hasattr(receiver, "parent") and callable(receiver.parent) else None
    while obj is not None and len(names) < 3:
        module = type(obj).__module__ or ""
        if module.startswith(("explorer", "pyqtgraph")):
            names.append(type(obj).__name__)
        obj = obj.parent() if callable(getattr(obj, "parent", None)) else None
    return f"{kind} → {' in '.join(names)}"


class TimedApp(QApplication):
    """A QApplication that times each outermost event delivered on the GUI thread (and, when
    asked, names and profiles the slow ones)."""

    def __init__(self, argv: list[str], name_ms: float = 0.0, profile_ms: float = 0.0) -> None:
        super().__init__(argv)
        self.setApplicationName("diffusion-explorer-bench")
        self._gui = threading.get_ident()
        self._depth = 0
        self.samples: list[float] | None = None  # seconds per handler, while a phase records
        self.name_ms, self.profile_ms = name_ms, profile_ms
        self.slow: dict[str, list[float]] = {}  # handler name → its times ≥ name_ms (ms)
        self.profiles: dict[str, pstats.Stats] = {}  # handler name → profile of its slow runs

    def notify(self, receiver, event) -> bool:  # noqa: N802 - Qt's name
        if self.samples is None or threading.get_ident() != self._gui:
            return super().notify(receiver, event)
        outer = self._depth == 0
        profile = cProfile.Profile() if outer and self.profile_ms else None
        name = handler_name(receiver, event) if outer and self.name_ms else ""  # before: the event may be gone after
        self._depth += 1
        if profile is not None:
            profile.enable()
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().notify(receiver, event)
        finally:
            elapsed = time.perf_counter() - start
            if profile is not None:
                profile.disable()
            self._depth -= 1
            if outer:
                self.samples.append(elapsed)
                self._keep_slow(name, 1000 * elapsed, 1000 * (time.thread_time() - cpu), profile)

    def _keep_slow(self, name: str, ms: float, cpu_ms: float, profile: cProfile.Profile | None) -> None:
        if self.name_ms and ms >= self.name_ms:
            self.slow.setdefault(name, []).append((ms, cpu_ms))
        if profile is not None and ms >= self.profile_ms:
            if name in self.profiles:
                self.profiles[name].add(profile)
            else:
                self.profiles[name] = pstats.Stats(profile, stream=io.StringIO())

    def take_slow(self) -> dict:
        """The slow handlers since the last call, worst first: name → count, worst ms and that
        one's CPU ms on the GUI thread (much less than its wall time: the thread waited, for the
        CPU or for Python's lock, rather than worked)."""
        slow, self.slow = self.slow, {}
        rows = sorted(slow.items(), key=lambda kv: -max(kv[1])[0])
        return {name: {"count": len(times), "worst_ms": round(max(times)[0], 2), "worst_cpu_ms": round(max(times)[1], 2)}
                for name, times in rows}

    def print_profiles(self, phase: str, top: int = 25) -> None:
        profiles, self.profiles = self.profiles, {}
        for name, stats in sorted(profiles.items()):
            out = io.StringIO()
            stats.stream = out
            stats.sort_stats("cumulative").print_stats(top)
            print(f"===== {phase}: {name} (handlers ≥ {self.profile_ms} ms)\n{out.getvalue()}", file=sys.stderr)


def image_mixture(components: int, size: int = 32) -> GMMDenoiser:
    """A fixed random mixture of smooth colour images (as ``gui_overhead.py`` builds it)."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(components, 3, 4, 4, generator=g) * 2 - 1
    means = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return GMMDenoiser(means.reshape(components, -1), [0.1] * components, [1.0] * components, (3, size, size),
                       name="mixture32")


def summary(samples: list[float]) -> dict:
    ms = sorted(1000 * s for s in samples)
    if not ms:
        return {"handlers": 0}
    return {
        "handlers": len(ms), "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2), "worst_ms": round(ms[-1], 2),
        "stalls": {f">={t}ms": sum(v >= t for v in ms) for t in STALL_MS},
    }


def record(app: TimedApp, body, phase: str = "") -> dict:
    """Run ``body()`` with every GUI-thread handler timed (and the slow ones named, when asked)."""
    app.samples = []
    try:
        body()
    finally:
        samples, app.samples = app.samples, None
    out = summary(samples)
    if app.name_ms:
        out["slow_handlers"] = app.take_slow()
    if app.profile_ms:
        app.print_profiles(phase)
    return out


def wait_for(signal, start) -> str:
    """Call ``start()`` and spin the event loop until ``signal`` fires; its first argument."""
    loop = QEventLoop()
    got: list = []

    def ended(*args) -> None:
        got.append(args[0] if args else None)
        loop.quit()

    signal.connect(ended)
    try:
        if start() is False:
            raise SystemExit("the view refused to start")
        loop.exec()
    finally:
        signal.disconnect(ended)
    return got[0]


def scrub(app: QApplication, slider, moves: int) -> None:
    """Right-arrow presses on the slider from its start, each followed by what it caused."""
    slider.setValue(slider.minimum())
    app.processEvents()
    for _ in range(moves):
        QApplication.sendEvent(slider, QKeyEvent(QEvent.KeyPress, Qt.Key_Right, Qt.NoModifier))
        app.processEvents()


def freeze_heap() -> None:
    """What the app does once its window is up (``explorer.ui.app.freeze_heap``; nothing in
    checkouts older than it, so that a "before" run measures the app as it was)."""
    getattr(app_module, "freeze_heap", lambda: None)()


def settle(app: QApplication, ms: int = 200) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def run_tab(app: TimedApp, den: GMMDenoiser, batch: int, steps: int) -> dict:
    from explorer.ui.main_window import MainWindow
    from explorer.ui.settings import AppSettings, open_settings

    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(AppSettings(open_settings(str(Path(tmp) / "bench.ini"))), autorun=False, remember=False)
        window.resize(1400, 900)
        window.use_denoiser(den, "mixture32")
        window.show()
        window.model.load(RunConfig(solver="heun", steps=steps, batch=batch, device="cpu"))
        freeze_heap()  # as run_app does once the window is up
        settle(app, STARTED_MS)
        name = f"run_tab/batch{batch}"
        out = {"run": record(app, lambda: wait_for(window.runEnded, window.start_run), f"{name} run")}
        settle(app)
        out["scrub"] = record(app, lambda: scrub(app, window.run_view.slider, steps), f"{name} scrub")
        window.worker.shutdown()
        window.close()
        window.deleteLater()
        settle(app, 50)
    return out


def compare_tab(app: TimedApp, den: GMMDenoiser, columns: int, batch: int, steps: int) -> dict:
    from explorer.ui.compare_view import CompareView
    from explorer.session.run import RunSession
    from explorer.ui.session import Session

    session = Session(RunSession(den, "mixture32", RunConfig(steps=steps, batch=batch)))
    view = CompareView(session)
    view.resize(1400, 900)
    view.show()
    for k in range(columns):
        view.add_column(RunConfig(solver=COLUMN_SOLVERS[k % len(COLUMN_SOLVERS)], steps=steps, batch=batch))
    freeze_heap()  # as run_app does once the window is up
    settle(app, STARTED_MS)
    name = f"compare_tab/{columns}col/batch{batch}"
    out = {"run": record(app, lambda: wait_for(view.runEnded, view.run_all), f"{name} run")}
    out["reference"] = record(app, lambda: wait_for(view.runEnded, view.run_reference), f"{name} reference")
    settle(app)
    moves = min(view.slider.maximum(), 2 * steps)
    view.view_box.setCurrentIndex(view.view_box.findData("x0"))
    out["scrub_x0"] = record(app, lambda: scrub(app, view.slider, moves), f"{name} scrub_x0")
    view.view_box.setCurrentIndex(view.view_box.findData("diff"))
    out["scrub_diff"] = record(app, lambda: scrub(app, view.slider, moves), f"{name} scrub_diff")
    out["slider_positions"] = view.slider.maximum() + 1
    view.worker.shutdown()
    view.close()
    view.deleteLater()
    settle(app, 50)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="16,64")
    p.add_argument("--columns", default="1,4")
    p.add_argument("--steps", type=int, default=19)
    p.add_argument("--components", type=int, default=64, help="mixture components (cost per step ∝ K)")
    p.add_argument("--tabs", default="run,compare")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--by-handler", type=float, default=0.0, metavar="MS",
                   help="name every kind of handler that took at least MS ms (0: none)")
    p.add_argument("--profile", type=float, default=0.0, metavar="MS",
                   help="profile handlers; print where those of at least MS ms spent their time (0: no profile)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    app = TimedApp(sys.argv[:1], name_ms=args.by_handler, profile_ms=args.profile)
    den = image_mixture(args.components)
    batches = [int(b) for b in args.batches.split(",")]
    result: dict = {
        "model": f"GMM 3×32×32, K={args.components}", "steps": args.steps, "solvers": list(COLUMN_SOLVERS),
        "platform": os.environ.get("QT_QPA_PLATFORM") or "xcb (DISPLAY)", "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }
    tabs = args.tabs.split(",")
    if "run" in tabs:
        for b in batches:
            result[f"run_tab/batch{b}"] = run_tab(app, den, b, args.steps)
            print(f"run tab batch {b}: done", file=sys.stderr, flush=True)
    if "compare" in tabs:
        for c in (int(c) for c in args.columns.split(",")):
            for b in batches:
                result[f"compare_tab/{c}col/batch{b}"] = compare_tab(app, den, c, b, args.steps)
                print(f"compare tab {c} columns batch {b}: done", file=sys.stderr, flush=True)
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
