"""The sampler's own cost beyond the denoiser's evaluations (issue: sampling engine).

Runs N steps of a solver on a 2-D toy with a large batch, timing the time spent inside
D separately, and prints the ratio (total − inside D) / inside D.

    python benchmarks/sampler_overhead.py [--solver heun] [--steps 1000] [--batch 4096]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from explorer import RunConfig, sample_steps, toy
from explorer.core.denoiser import Denoiser


class Timed(Denoiser):
    """Wraps a denoiser and accumulates the wall time of its calls."""

    def __init__(self, inner: Denoiser) -> None:
        super().__init__()
        self.inner = inner
        self.shape, self.sigma_min, self.sigma_max = inner.shape, inner.sigma_min, inner.sigma_max
        self.seconds = 0.0

    def forward(self, x, sigma, labels=None):
        start = time.perf_counter()
        out = self.inner(x, sigma, labels)
        self.seconds += time.perf_counter() - start
        return out


def measure(solver: str, steps: int, batch: int, toy_name: str, record: bool) -> dict:
    den = Timed(toy(toy_name))
    cfg = RunConfig(solver=solver, steps=steps, batch=batch, device="cpu")
    start = time.perf_counter()
    nfe = 0
    for event in sample_steps(den, cfg, record_evals=record):
        nfe = event.nfe
    total = time.perf_counter() - start
    return {
        "solver": solver, "steps": steps, "batch": batch, "toy": toy_name, "nfe": nfe,
        "total_s": round(total, 4), "inside_D_s": round(den.seconds, 4),
        "overhead_ratio": round((total - den.seconds) / den.seconds, 4),
        "overhead_per_step_us": round((total - den.seconds) / steps * 1e6, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--solver", default="heun")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--toy", default="ring")
    p.add_argument("--record-evals", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    measure(args.solver, 20, args.batch, args.toy, args.record_evals)  # warm-up
    result = measure(args.solver, args.steps, args.batch, args.toy, args.record_evals)
    result.update(machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(), torch=torch.__version__)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
