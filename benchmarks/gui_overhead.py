"""Does the open window slow sampling down? The same run headless and from the GUI.

Headless is the core's loop as ``explorer.core.sampling.sample`` runs it (events into a
``TrajectoryRecorder``). The GUI run is the app's own path: the worker thread, the
per-step record, uint8 frames and the window repainting them. Two numbers each:

- sampling speed, steps per second from the initial state to the last step (what the
  status bar shows; the requirement: the GUI's within 10% of headless);
- end to end, from Sample to the "finished" signal, which adds what the app does once
  per run (the PCA of the paths, the first drawing of the result).

The runs alternate (headless, GUI, headless, …) so drift on a shared machine hits both.

    python benchmarks/gui_overhead.py [--model NAME|FILE] [--steps 40] [--batch 64] [--repeats 5]

Without ``--model`` it uses the shipped image checkpoint when there is one, else
``mixture32``: a Gaussian mixture over 3×32×32 images (256 components) whose steps take
tens of milliseconds, so the window has many frames to draw. Runs offscreen unless ``$DISPLAY`` is set (e.g. under Xvfb).
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
from explorer.core.sampling import sample_steps  # noqa: E402
from explorer.core.trajectory import TrajectoryRecorder  # noqa: E402
from explorer.models.loader import DEFAULT_CHECKPOINT, load_denoiser, shipped_checkpoints  # noqa: E402


def image_mixture(components: int = 256, size: int = 32) -> GMMDenoiser:
    """A fixed random mixture of smooth colour images (cost ∝ batch × components × pixels)."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(components, 3, 4, 4, generator=g) * 2 - 1
    means = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return GMMDenoiser(means.reshape(components, -1), [0.1] * components, [1.0] * components, (3, size, size), name="mixture32")


def pick_model(name: str | None) -> tuple[Denoiser, str]:
    if name == "mixture32":
        return image_mixture(), "mixture32 (GMM, 3×32×32, K=256)"
    if name:
        return load_denoiser(name), name
    if DEFAULT_CHECKPOINT in shipped_checkpoints():
        return load_denoiser(DEFAULT_CHECKPOINT), DEFAULT_CHECKPOINT
    return image_mixture(), "mixture32 (GMM, 3×32×32, K=256)"


def headless(den: Denoiser, config: RunConfig) -> tuple[float, float]:
    """(seconds from the initial state to the last step, seconds in all)."""
    start = time.perf_counter()
    recorder = TrajectoryRecorder(config, "bench")
    first = last = 0.0
    for event in sample_steps(den, config):
        recorder.add(event)
        last = time.perf_counter()
        first = first or last
    recorder.finish()
    return last - first, time.perf_counter() - start


def gui(window, config: RunConfig) -> tuple[float, float, int]:
    """(seconds from the initial state to the last step, from Sample to the finished
    signal, and the number of frames drawn)."""
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
    return window.record.elapsed, seconds, frames[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="denoiser name or file, or mixture32 (default: the shipped checkpoint, else mixture32)")
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
        runs: dict[str, list[float]] = {"headless_loop": [], "headless_total": [], "gui_loop": [], "gui_total": []}
        frames = []
        for _ in range(args.repeats):
            loop_s, total_s = headless(den, config)
            runs["headless_loop"].append(loop_s)
            runs["headless_total"].append(total_s)
            loop_s, total_s, drawn = gui(window, config)
            runs["gui_loop"].append(loop_s)
            runs["gui_total"].append(total_s)
            frames.append(drawn)
        window.close()
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "model": label, "solver": args.solver, "steps": args.steps, "batch": args.batch, "repeats": args.repeats,
        "platform": os.environ.get("QT_QPA_PLATFORM") or "xcb (DISPLAY)", "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        **{f"{k}_s": [round(t, 3) for t in v] for k, v in runs.items()},
        "frames_drawn": frames,
        "headless_steps_per_s": round(args.steps / med["headless_loop"], 2),
        "gui_steps_per_s": round(args.steps / med["gui_loop"], 2),
        "sampling_slowdown_pct": round(100 * (med["gui_loop"] / med["headless_loop"] - 1), 1),
        "end_to_end_slowdown_pct": round(100 * (med["gui_total"] / med["headless_total"] - 1), 1),
    }
    print(json.dumps(result, indent=2))
    within = med["gui_loop"] <= 1.10 * med["headless_loop"]
    print(f"GUI sampling speed {'within' if within else 'NOT within'} 10% of headless "
          f"({result['sampling_slowdown_pct']:+.1f}%; end to end {result['end_to_end_slowdown_pct']:+.1f}%).")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
