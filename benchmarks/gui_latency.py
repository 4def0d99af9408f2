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

Offscreen unless ``$DISPLAY`` is set. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
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

STALL_MS = (16, 50, 100, 500, 1000)
COLUMN_SOLVERS = ("heun", "euler", "dpm-solver++2m", "dpm-solver-2")


class TimedApp(QApplication):
    """A QApplication that times each outermost event delivered on the GUI thread."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(argv)
        self.setApplicationName("diffusion-explorer-bench")
        self._gui = threading.get_ident()
        self._depth = 0
        self.samples: list[float] | None = None  # seconds per handler, while a phase records

    def notify(self, receiver, event) -> bool:  # noqa: N802 - Qt's name
        if self.samples is None or threading.get_ident() != self._gui:
            return super().notify(receiver, event)
        self._depth += 1
        start = time.perf_counter()
        try:
            return super().notify(receiver, event)
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.samples.append(time.perf_counter() - start)


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


def record(app: TimedApp, body) -> dict:
    """Run ``body()`` with every GUI-thread handler timed."""
    app.samples = []
    try:
        body()
    finally:
        samples, app.samples = app.samples, None
    return summary(samples)


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
        settle(app)
        out = {"run": record(app, lambda: wait_for(window.runEnded, window.start_run))}
        settle(app)
        out["scrub"] = record(app, lambda: scrub(app, window.run_view.slider, steps))
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
    settle(app)
    out = {"run": record(app, lambda: wait_for(view.runEnded, view.run_all))}
    out["reference"] = record(app, lambda: wait_for(view.runEnded, view.run_reference))
    settle(app)
    moves = min(view.slider.maximum(), 2 * steps)
    view.view_box.setCurrentIndex(view.view_box.findData("x0"))
    out["scrub_x0"] = record(app, lambda: scrub(app, view.slider, moves))
    view.view_box.setCurrentIndex(view.view_box.findData("diff"))
    out["scrub_diff"] = record(app, lambda: scrub(app, view.slider, moves))
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
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    app = TimedApp(sys.argv[:1])
    den = image_mixture(args.components)
    batches = [int(b) for b in args.batches.split(",")]
    result: dict = {
        "model": f"GMM 3×32×32, K={args.components}", "steps": args.steps, "solvers": list(COLUMN_SOLVERS),
        "platform": os.environ.get("QT_QPA_PLATFORM") or "xcb (DISPLAY)", "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
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
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
