"""Arguments shared by the subcommands that run the sampler (SPEC §7)."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from types import SimpleNamespace
from typing import Any, Optional

from explorer.core.choices import DISCRETIZATIONS, FINALS, PROCESSES, SCALINGS, SCHEDULES
from explorer.core.config import MAX_SEED, RunConfig

# The field defaults, read without building (and validating) a RunConfig at import time.
_DEFAULTS = SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(RunConfig)})


def add_model_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--model", default="default", required=required,
        help="built-in name (e.g. ring, moons, gaussian, fashion32-edm), FILE.json (mixture), FILE.safetensors, FILE.pkl, "
        "FILE.npy/.npz (ideal denoiser of an array) or a diffusers folder (default: the app's default denoiser)",
    )


def add_run_arguments(parser: argparse.ArgumentParser, with_steps: bool = True) -> None:
    """The run-configuration options: process, schedule, solver, steps, churn, seed, dtype…"""
    g = parser.add_argument_group("process and time steps")
    g.add_argument("--process", choices=list(PROCESSES), default=_DEFAULTS.process)
    g.add_argument("--sigma-schedule", choices=SCHEDULES, help="σ(t) apart from the process (advanced)")
    g.add_argument("--scaling", choices=SCALINGS, help="s(t) apart from the process (advanced)")
    g.add_argument("--disc", choices=DISCRETIZATIONS, default=_DEFAULTS.disc, help="time-step discretization")
    g.add_argument("--rho", type=float, default=_DEFAULTS.rho, help="ρ of the edm discretization (default 7)")
    g.add_argument("--sigma-min", type=float)
    g.add_argument("--sigma-max", type=float)
    g.add_argument("--epsilon-s", type=float, default=_DEFAULTS.epsilon_s, help="VP's smallest t (default 1e-3)")
    s = parser.add_argument_group("solver")
    s.add_argument("--solver", default=_DEFAULTS.solver, help="see `diffusion-explorer solvers` (default heun)")
    if with_steps:
        steps = s.add_mutually_exclusive_group()
        steps.add_argument("--steps", type=int, help="solver steps N (default 18)")
        steps.add_argument("--nfe", type=int, help="an NFE budget: the largest N that fits is used")
    s.add_argument("--final", choices=FINALS, default=_DEFAULTS.final, help="last step: to σ=0 (zero), stop at σ_min, or denoise")
    s.add_argument("--no-lower-order-final", action="store_true", help="keep full order in the last multistep steps")
    s.add_argument("--alpha", type=float, default=_DEFAULTS.alpha, help="Heun's α (default 1)")
    s.add_argument("--churn", type=float, default=_DEFAULTS.churn, help="EDM's S_churn (euler/heun)")
    s.add_argument("--s-min", type=float, default=_DEFAULTS.s_min)
    s.add_argument("--s-max", type=float, default=_DEFAULTS.s_max)
    s.add_argument("--s-noise", type=float, default=_DEFAULTS.s_noise)
    s.add_argument("--eta", type=float, default=_DEFAULTS.eta, help="η of euler-ancestral and dpm-solver++2m-sde")
    s.add_argument("--rtol", type=float, help="adaptive solvers' relative tolerance")
    s.add_argument("--atol", type=float, help="adaptive solvers' absolute tolerance")
    r = parser.add_argument_group("noise, precision, device")
    r.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="sample k uses seed + k")
    r.add_argument("--batch", type=int, default=_DEFAULTS.batch)
    r.add_argument("--label", type=int, help="class for class-conditional denoisers")
    r.add_argument("--dtype", choices=["float32", "float64"], default=_DEFAULTS.dtype)
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default=_DEFAULTS.device)
    r.add_argument("--no-fast", action="store_true", help="turn off the CUDA fast path (graph-replayed D, streamed steps)")


def config_from_args(args: argparse.Namespace, **overrides: Any) -> RunConfig:
    """A validated RunConfig from parsed arguments (ValueError on nonsense)."""
    steps = getattr(args, "steps", None)
    nfe = getattr(args, "nfe", None)
    if steps is None and nfe is None:
        steps = _DEFAULTS.steps
    fields = dict(
        process=args.process, sigma_schedule=args.sigma_schedule, scaling=args.scaling, disc=args.disc,
        rho=args.rho, sigma_min=args.sigma_min, sigma_max=args.sigma_max, solver=args.solver, steps=steps,
        nfe=nfe, final=args.final, lower_order_final=not args.no_lower_order_final, alpha=args.alpha,
        churn=args.churn, s_min=args.s_min, s_max=args.s_max, s_noise=args.s_noise, eta=args.eta,
        rtol=args.rtol, atol=args.atol, seed=args.seed, batch=args.batch, label=args.label,
        dtype=args.dtype, device=args.device, epsilon_s=args.epsilon_s, fast=not getattr(args, "no_fast", False),
    )
    fields.update(overrides)
    return RunConfig(**fields)


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: Optional[int], label: str = "", stream: Any = None) -> None:
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, step: int, nfe: int, sigma: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.total:
            width = 30
            filled = int(width * min(step, self.total) / self.total)
            bar = "█" * filled + "·" * (width - filled)
            head = f"{bar} {step}/{self.total}"
        else:
            head = f"step {step}"
        self.stream.write(f"\r{self.label} {head}  NFE {nfe}  σ={sigma:.4g}  {elapsed:.1f}s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


MAX_SEEDS = 10_000_000  # samples one generate call may ask for (ten million images is a week of GPU time)


def parse_seeds(text: str) -> list[int]:
    """'0-49', '1,5,9' or '3' → a list of seeds; its size is checked before it is built."""
    ranges: list[tuple[int, int]] = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                ranges.append((int(a), int(b)))
            elif part.strip():
                ranges.append((int(part), int(part)))
    except ValueError:
        raise ValueError(f"Seeds must look like 0-49 or 1,5,9 (got {text!r}).") from None
    if not ranges or min(a for a, _ in ranges) < 0:
        raise ValueError(f"Seeds must be non-negative integers (got {text!r}).")
    if max(b for _, b in ranges) > MAX_SEED:
        raise ValueError(f"Seeds must be at most 2⁶³ − 1 (got {text!r}).")
    count = sum(max(0, b - a + 1) for a, b in ranges)
    if count > MAX_SEEDS:
        raise ValueError(f"{count} seeds is more than the {MAX_SEEDS} one call may draw; split the range.")
    seeds = [s for a, b in ranges for s in range(a, b + 1)]
    if not seeds:
        raise ValueError(f"The seed range {text!r} is empty.")
    return seeds


def finite_or_none(value: float) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None
