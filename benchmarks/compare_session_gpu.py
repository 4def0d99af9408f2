"""Compare-tab columns run concurrently against one after another, on a GPU (Qt-free).

    python benchmarks/compare_session_gpu.py --out results/compare-gpu            # CUDA, batch 64
    python benchmarks/compare_session_gpu.py --device cpu --batch 4 --out /tmp/c  # the same on a CPU

Four solver columns (DPM-Solver++(2M), Heun, Euler, DPM-Solver++(3M)) at the app's default run
configuration (``default_run_config``: EDM, edm steps, 12 steps, the default precision) on the
shipped ``fashion32-edm``, from the same latents. Each repeat runs the comparison twice, in
alternating order:

- **concurrent**, as the Compare tab runs columns on a GPU (``ColumnsJob.events`` picks
  :func:`explorer.core.compare.interleaved_events`): the columns of one device and dtype take
  one step each in turn on one worker;
- **sequential** (:func:`explorer.core.compare.comparison_events`): one column after another,
  as on a CPU.

Both record every step's state and evaluations, as the tab does. It writes
``compare-session-gpu.json`` and ``.md`` to ``--out``: the wall time of every repeat per
mode and the median, each column's NFE and own seconds, peak GPU memory per mode, and for
each column the largest |difference| between the concurrent and the sequential final images
(0 when the two ways compute the same numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from explorer.core.compare import ColumnRun, Comparison, CompareProgress, comparison_events, interleaved_events  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.defaults import default_run_config  # noqa: E402
from explorer.core.denoiser import Denoiser  # noqa: E402
from explorer.models.loader import load_denoiser  # noqa: E402

SOLVERS = ("dpm-solver++2m", "heun", "euler", "dpm-solver++3m")
MODES = ("concurrent", "sequential")
STEM = "compare-session-gpu"


@dataclass
class Pass:
    """One run of every column in one mode: the wall time and the finished columns."""

    mode: str
    seconds: float
    runs: list[ColumnRun]
    peak_bytes: Optional[int] = None


@dataclass
class Measurement:
    """Every pass of both modes, with the comparison they ran."""

    comparison: Comparison
    device: str
    passes: dict[str, list[Pass]] = field(default_factory=lambda: {m: [] for m in MODES})


def columns_for(denoiser: Denoiser, device: str, batch: int, solvers: Sequence[str], steps: Optional[int]) -> list[RunConfig]:
    """The default run configuration with each solver in turn (and ``steps`` when given)."""
    base = default_run_config(denoiser, device).replace(batch=batch)
    if steps is not None:
        base = base.replace(steps=steps)
    return [base.replace(solver=name) for name in solvers]


def events_of(mode: str) -> Callable[[Denoiser, Comparison], Iterator[CompareProgress]]:
    """The event stream of a mode, with every step's evaluations recorded as the tab records them."""
    if mode == "concurrent":
        return lambda den, cmp: interleaved_events(den, cmp, True)
    return lambda den, cmp: comparison_events(den, cmp, False, True)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_pass(denoiser: Denoiser, comparison: Comparison, mode: str, device: str) -> Pass:
    """Run every column once in ``mode``; the clock stops after the device has finished."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    runs: dict[int, ColumnRun] = {}
    for progress in events_of(mode)(denoiser, comparison):
        if progress.run is not None:
            runs[progress.column] = progress.run
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return Pass(mode, seconds, [runs[k] for k in sorted(runs)], peak)


def measure(denoiser: Denoiser, comparison: Comparison, device: str, repeats: int, warmup: int) -> Measurement:
    """Warm-up passes (not kept: kernel choice and allocator growth), then ``repeats`` of each
    mode, the order alternating so both see the same machine state."""
    for k in range(warmup):
        run_pass(denoiser, comparison, MODES[k % 2], device)
    out = Measurement(comparison, device)
    for k in range(repeats):
        for mode in (MODES if k % 2 == 0 else MODES[::-1]):
            out.passes[mode].append(run_pass(denoiser, comparison, mode, device))
    return out


def max_abs_diff(a: ColumnRun, b: ColumnRun) -> float:
    """The largest |difference| of two runs' final images (float64, on the CPU)."""
    return float((a.trajectory.samples.double() - b.trajectory.samples.double()).abs().max())


def summary(m: Measurement) -> dict:
    """The JSON record: times per mode, per-column NFE and seconds, equality of the final images."""
    concurrent, sequential = m.passes["concurrent"], m.passes["sequential"]
    medians = {mode: statistics.median(p.seconds for p in passes) for mode, passes in m.passes.items()}
    columns = []
    for k, config in enumerate(m.comparison.columns):
        diffs = [max_abs_diff(c.runs[k], s.runs[k]) for c in concurrent for s in sequential]
        columns.append({
            "solver": config.solver, "steps": config.steps, "nfe": concurrent[0].runs[k].trajectory.nfe,
            "seconds": {mode: statistics.median(p.runs[k].seconds for p in passes) for mode, passes in m.passes.items()},
            "max_abs_diff_final": max(diffs), "final_equal": max(diffs) == 0.0,
        })
    first = m.comparison.columns[0]
    return {
        "model": m.comparison.model, "device": m.device, "device_name": device_name(m.device),
        "torch": torch.__version__, "python": platform.python_version(), "load_average": os.getloadavg()[0],
        "batch": m.comparison.batch, "seed": m.comparison.seed, "precision": first.precision, "dtype": first.dtype,
        "process": first.process, "disc": first.disc, "repeats": len(concurrent),
        "wall_seconds": {mode: [p.seconds for p in passes] for mode, passes in m.passes.items()},
        "median_seconds": medians,
        "sequential_over_concurrent": medians["sequential"] / medians["concurrent"],
        "peak_memory_bytes": {mode: max((p.peak_bytes or 0) for p in passes) or None for mode, passes in m.passes.items()},
        "columns": columns,
        "all_final_equal": all(c["final_equal"] for c in columns),
        "max_abs_diff_final": max(c["max_abs_diff_final"] for c in columns),
    }


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def markdown(s: dict) -> str:
    """The human-readable table of :func:`summary`."""
    lines = [
        f"# Compare columns: concurrent against sequential ({s['device_name']})", "",
        f"`{s['model']}`, batch {s['batch']}, seed {s['seed']}, {s['process']} / {s['disc']} steps, network "
        f"{s['precision']}, state {s['dtype']}; torch {s['torch']}; {s['repeats']} repeats, order alternating; "
        f"load average {s['load_average']:.2f} at the end.", "",
        "| mode | median wall s | every repeat (s) | peak GPU memory |", "|---|---:|---|---:|",
    ]
    for mode in MODES:
        peak = s["peak_memory_bytes"][mode]
        memory = f"{peak / 2**20:.0f} MiB" if peak else "—"
        every = ", ".join(f"{t:.3f}" for t in s["wall_seconds"][mode])
        lines.append(f"| {mode} | {s['median_seconds'][mode]:.3f} | {every} | {memory} |")
    lines += ["", f"Sequential / concurrent: **{s['sequential_over_concurrent']:.2f}×**.", "",
              "| column | solver | steps | NFE | own s, concurrent | own s, sequential | max abs diff of final images |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    for k, c in enumerate(s["columns"], start=1):
        lines.append(f"| {k} | {c['solver']} | {c['steps']} | {c['nfe']} | {c['seconds']['concurrent']:.3f} | "
                     f"{c['seconds']['sequential']:.3f} | {c['max_abs_diff_final']:.3g} |")
    same = "equal in every column" if s["all_final_equal"] else f"not equal (largest difference {s['max_abs_diff_final']:.3g})"
    lines += ["", f"Final images of the concurrent and the sequential runs: {same}.", "",
              "A column's own seconds are the time spent in its own steps; interleaved, the columns' "
              "steps alternate, so the wall time of a mode is the figure to compare.", ""]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for compare-session-gpu.json and .md")
    p.add_argument("--model", default="fashion32-edm")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--solvers", default=",".join(SOLVERS))
    p.add_argument("--steps", type=int, default=None, help="steps per column (default: the default run's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed passes first (one of each mode at 2)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("compare_session_gpu: CUDA is not available here (use --device cpu --batch 4)", file=sys.stderr)
        return 2
    denoiser = load_denoiser(args.model, device=args.device)
    configs = columns_for(denoiser, args.device, args.batch, [s.strip() for s in args.solvers.split(",") if s.strip()], args.steps)
    comparison = Comparison(args.model, tuple(configs), seed=args.seed, batch=args.batch)
    result = summary(measure(denoiser, comparison, args.device, args.repeats, args.warmup))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{STEM}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / f"{STEM}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
