"""Wall time of the app's default run and of its first x₀, headless, in one process: the quick
check of issue #14's CPU targets (``bench --cpu-table`` is the full lever table).

    OMP_NUM_THREADS=2 python benchmarks/default_run_cpu.py --model fashion32-edm --repeats 5

Prints one line per repeat (first x₀ s, whole run s) for the default and for the former default
(Heun, 35 NFE, float32), their medians, the load average and the ratio of the medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from explorer.core.defaults import default_run_config, legacy_run_config  # noqa: E402
from explorer.core.sampling import sample_steps  # noqa: E402
from explorer.models.loader import load_denoiser  # noqa: E402


def timed_run(denoiser, config) -> tuple[float, float]:
    """(seconds to the first step's x₀, seconds to the end) of one run."""
    t0 = time.perf_counter()
    first = None
    with torch.inference_mode():
        for event in sample_steps(denoiser, config):
            if first is None and event.denoised is not None:
                first = time.perf_counter() - t0
    return first if first is not None else float("nan"), time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fashion32-edm")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-legacy", action="store_true", help="time the default only")
    args = p.parse_args()
    denoiser = load_denoiser(args.model, device="cpu")
    configs = {"default": default_run_config(denoiser, "cpu")}
    if not args.no_legacy:
        configs["former default"] = legacy_run_config(denoiser, "cpu")
    print(f"cpu threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}")
    for name, config in configs.items():
        print(f"{name}: {config.solver}, {config.steps} steps, batch {config.batch}, network {config.precision}")
    timed_run(denoiser, configs["default"])  # warm-up: first-call allocations and oneDNN kernels
    results = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, config in configs.items():  # alternating, so both see the same load
            first, total = timed_run(denoiser, config)
            results[name].append((first, total))
            print(f"  {name}: first x0 {first:.3f} s, run {total:.3f} s")
    medians = {n: (statistics.median(f for f, _ in r), statistics.median(t for _, t in r)) for n, r in results.items()}
    for name, (first, total) in medians.items():
        print(f"median {name}: first x0 {first:.3f} s, run {total:.3f} s")
    if "former default" in medians:
        print(f"default / former default: {medians['default'][1] / medians['former default'][1]:.3f}")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
