"""Does the open window slow sampling down? The same run headless and from the GUI.

Headless is ``explorer.core.sampling.sample`` (which records the trajectory too). The
GUI run is the app's own path: the worker thread, the per-step record, uint8 frames at
60 Hz and the window repainting them, timed from Sample to the "finished" signal. The
runs alternate (headless, GUI, headless, …) so drift on a shared machine hits both.

    python benchmarks/gui_overhead.py [--model NAME|FILE] [--steps 40] [--batch 64] [--repeats 5]

Without ``--model`` it uses the shipped image checkpoint when there is one, else a
Gaussian mixture over 3×32×32 images (256 components), heavy enough that a step takes
tens of milliseconds. Runs offscreen unless ``$DISPLAY`` is set (e.g. under Xvfb).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from explorer.core.analytic import GMMDenoiser  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.denoiser import Denoiser  # noqa: E402
from explorer.core.sampling import sample  # noqa: E402
from explorer.models.loader import DEFAULT_CHECKPOINT, load_denoiser, shipped_checkpoints  # noqa: E402


def image_mixture(components: int = 256, size: int = 32) -> GMMDenoiser:
    """A fixed random mixture of smooth colour images (cost ∝ batch × components × pixels)."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(components, 3, 4, 4, generator=g) * 2 - 1
    means = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return GMMDenoiser(means.reshape(components, -1), [0.1] * components, [1.0] * components, (3, size, size), name="mixture32")


def pick_model(name: str | None) -> tuple[Denoiser, str]:
    if name:
        return load_denoiser(name), name
    if DEFAULT_CHECKPOINT in shipped_checkpoints():
        return load_denoiser(DEFAULT_CHECKPOINT), DEFAULT_CHECKPOINT
    return image_mixture(), "mixture32 (GMM, 3×32×32, K=256)"


def headless(den: Denoiser, config: RunConfig) -> float:
    start = time.perf_counter()
    sample(den, config)
    return time.perf_counter() - start


def gui(window, config: RunConfig) -> tuple[float, int]:
    """Seconds from Sample to the finished signal, and the number of frames drawn."""
    from PySide6.QtCore import QEventLoop

    loop = QEventLoop()
    outcome: list[str] = []
    frames = [0]

    def ended(how: str) -> None:
        outcome.append(how)
        loop.quit()

    def drawn(_frame) -> None:
        frames[0] += 1

    window.runEnded.connect(ended)
    window.worker.frameReady.connect(drawn)
    window.model.load(config)
    start = time.perf_counter()
    if not window.start_run():
        raise SystemExit(f"the GUI refused to start the run: {window.model.error}")
    loop.exec()
    seconds = time.perf_counter() - start
    window.runEnded.disconnect(ended)
    window.worker.frameReady.disconnect(drawn)
    if outcome != ["finished"]:
        raise SystemExit(f"the GUI run {outcome}: {window.banner.text()}")
    return seconds, frames[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="denoiser name or file (default: shipped checkpoint or an image mixture)")
    p.add_argument("--solver", default="heun")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from explorer.ui.app import application
    from explorer.ui.main_window import MainWindow
    from explorer.ui.settings import AppSettings, open_settings

    den, label = pick_model(args.model)
    config = RunConfig(solver=args.solver, steps=args.steps, batch=args.batch, device="cpu")
    app = application()
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(AppSettings(open_settings(str(Path(tmp) / "bench.ini"))), autorun=False, remember=False)
        window.use_denoiser(den, label)
        window.show()
        app.processEvents()
        headless(den, config.replace(steps=2))  # warm-up: first-call costs out of the way
        gui(window, config.replace(steps=2))
        h_times, g_times, frames = [], [], []
        for _ in range(args.repeats):
            h_times.append(headless(den, config))
            seconds, drawn = gui(window, config)
            g_times.append(seconds)
            frames.append(drawn)
        window.close()
    h, g = statistics.median(h_times), statistics.median(g_times)
    result = {
        "model": label, "solver": args.solver, "steps": args.steps, "batch": args.batch, "repeats": args.repeats,
        "platform": os.environ.get("QT_QPA_PLATFORM") or "xcb (DISPLAY)", "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "headless_s": [round(t, 3) for t in h_times], "gui_s": [round(t, 3) for t in g_times],
        "frames_drawn": frames, "headless_median_s": round(h, 3), "gui_median_s": round(g, 3),
        "headless_steps_per_s": round(args.steps / h, 2), "gui_steps_per_s": round(args.steps / g, 2),
        "gui_slowdown_pct": round(100 * (g / h - 1), 1),
    }
    print(json.dumps(result, indent=2))
    within = g <= 1.10 * h
    print(f"GUI run {'within' if within else 'NOT within'} 10% of headless ({result['gui_slowdown_pct']:+.1f}%).")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
