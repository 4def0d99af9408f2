"""The CPU table of ``diffusion-explorer bench --cpu-table``: what each lever buys the default run.

Each row adds one lever (or tries one, then drops it again when it loses) and measures, in this
one process: D alone at the run's batch (median of loops of calls), a whole run (median of
repeats, wall clock) and the wall time until the first x₀ is handed out, against the default
before issue #14 (Heun, 35 NFE, float32, batch 16). Shared machines are noisy: the load
average is recorded beside every row, and the table is meant to be re-run and compared.

Levers: inference mode (against no_grad), the solver and NFE (from the shipped FD table),
channels-last, bf16 (only where the CPU computes bf16 natively), oneDNN fusion through
``torch.jit.freeze``, ``torch.compile`` (its compile time recorded), the thread count, and a
smaller first batch (the time to a first x₀ of 4 samples).
"""
from __future__ import annotations

import copy
import os
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import torch

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.fast import FastOptions, NetworkCast, network_variant
from explorer.core.latents import NoiseStreams, seeds_for
from explorer.core.precond import Preconditioner

# FD of fashion32-edm, 10k samples (checkpoints/fashion32-edm.md, float32, NVIDIA H200).
# FD (10k samples) of the shipped fashion32-edm, 4.5 M-image release (benchmarks/results/train-h200-2026-12-01).
FD_TABLE = {("heun", 35): 1.81, ("heun", 15): 5.63, ("dpm-solver++2m", 10): 2.26, ("dpm-solver++2m", 12): 1.89,
            ("dpm-solver++2m", 15): 1.84, ("euler", 35): 3.54}


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's word for it."""
    import platform

    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def load_average() -> float:
    """The 1-minute load average (what else ran on the cores during a row)."""
    return round(os.getloadavg()[0], 2)


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class _Unlabelled(torch.nn.Module):
    """F(x, c_noise) of an unconditional network, so that tracing sees tensors only."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return self.net(x, c_noise, None)


class _Traced(torch.nn.Module):
    """A traced F called the way the preconditioner calls F (labels must be None)."""

    def __init__(self, traced: torch.nn.Module) -> None:
        super().__init__()
        self.traced = traced

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.traced(x, c_noise)


def frozen_variant(denoiser: Preconditioner, options: FastOptions, batch: int) -> Denoiser:
    """D whose F is ``torch.jit.trace`` + ``torch.jit.freeze`` (oneDNN conv fusions), traced at ``batch``."""
    net = copy.deepcopy(denoiser.model)
    if options.channels_last:
        net = net.to(memory_format=torch.channels_last)
    x = torch.randn(batch, *denoiser.shape)
    if options.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = torch.full((batch,), 0.25)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=options.autocast_dtype is not None):
        traced = torch.jit.freeze(torch.jit.trace(_Unlabelled(net).eval(), (x, c), check_trace=False))
        for _ in range(2):  # the profiling executor specializes on the first calls
            traced(x, c)
    variant = copy.copy(denoiser)
    variant._modules = dict(denoiser._modules)
    variant._modules["model"] = NetworkCast(_Traced(traced), options.autocast_dtype, options.channels_last)
    return variant


@dataclass(frozen=True)
class Lever:
    """One row: a run configuration, how D is built, and how the process is set up."""

    name: str
    config: RunConfig
    options: FastOptions = FastOptions()
    threads: int = 2
    inference_mode: bool = True
    jit_freeze: bool = False
    adopted: bool = True  # kept for the rows below it
    whole_run: bool = True  # False: D alone (the run follows NFE × D)


def time_run(den: Denoiser, config: RunConfig, noise: torch.Tensor) -> tuple[float, float]:
    """Wall seconds of one whole run, and until the first event carrying x₀ was handed out."""
    from explorer.core.sampling import sample_steps

    start = time.perf_counter()
    first = None
    for event in sample_steps(den, config, noise, record_evals=False):
        if first is None and event.denoised is not None:
            first = time.perf_counter() - start
    return time.perf_counter() - start, first


@dataclass
class _Prepared:
    """A lever made ready: its D (for the D timing) and the (denoiser, config) a run uses."""

    lever: Lever
    d: Callable[[], Any]
    runner: Denoiser
    run_config: RunConfig
    noise: torch.Tensor
    d_ms: list[float]
    run_s: list[float]
    first_s: list[float]
    loads: list[float]


def prepare(den: Preconditioner, lever: Lever) -> _Prepared:
    cfg = lever.config
    noise = NoiseStreams(seeds_for(cfg.seed, cfg.batch)).randn(den.shape)
    if lever.jit_freeze:
        variant = frozen_variant(den, lever.options, cfg.batch)
        runner, run_cfg = variant, cfg.replace(precision="float32")  # the variant carries the precision itself
    elif lever.options.channels_last:
        variant = network_variant(den, lever.options)
        runner, run_cfg = variant, cfg.replace(precision="float32")
    else:
        variant = network_variant(den, lever.options)
        runner, run_cfg = den, cfg.replace(precision=lever.options.precision)  # the engine's own path
    x, sigma = noise * 2.0, torch.full((cfg.batch,), 2.0)
    mode = torch.inference_mode if lever.inference_mode else torch.no_grad

    def d() -> None:
        with mode():
            variant(x, sigma)

    return _Prepared(lever, d, runner, run_cfg, noise, [], [], [], [])


def measure_all(den: Preconditioner, rows: list[Lever], rounds: int, d_calls: int = 3,
                after_round: Optional[Callable[[list[dict[str, Any]]], None]] = None) -> list[dict[str, Any]]:
    """Every row, round-robin: one D timing and one run per row per round, so that all rows see the same load.

    The table reports the median and the minimum over rounds; on a shared machine the minimum
    is the closer estimate of the idle machine, the median of what a user sees under load.
    """
    threads = torch.get_num_threads()  # rows set their own count; the caller gets its own back
    try:
        prepared = [prepare(den, lever) for lever in rows]
        for p in prepared:  # warm-up: oneDNN primitive caches, the profiling executor, first-touch memory
            torch.set_num_threads(p.lever.threads)
            p.d()
            if p.lever.whole_run:
                time_run(p.runner, p.run_config.replace(nfe=2, steps=None), p.noise)
        for _ in range(rounds):
            for p in prepared:
                torch.set_num_threads(p.lever.threads)
                p.loads.append(load_average())
                p.d_ms.append(median_ms(p.d, d_calls, warmup=0))
                if p.lever.whole_run:
                    run, first = time_run(p.runner, p.run_config, p.noise)
                    p.run_s.append(run)
                    p.first_s.append(first)
            if after_round is not None:  # a long table on a busy machine keeps what it has measured so far
                after_round([_row(den, p) for p in prepared])
    finally:
        torch.set_num_threads(threads)
    return [_row(den, p) for p in prepared]


def _stats(values: list[float], digits: int) -> Optional[dict[str, float]]:
    if not values:
        return None
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits)}


def _row(den: Denoiser, p: _Prepared) -> dict[str, Any]:
    from explorer.core.sampling import make_plan

    lever, cfg = p.lever, p.lever.config
    nfe = make_plan(den, cfg).nfe
    return {"lever": lever.name, "solver": cfg.solver, "nfe": nfe, "batch": cfg.batch,
            "precision": lever.options.precision, "channels_last": lever.options.channels_last,
            "jit_freeze": lever.jit_freeze, "threads": lever.threads, "inference_mode": lever.inference_mode,
            "adopted": lever.adopted, "d_ms": _stats(p.d_ms, 1), "run_s": _stats(p.run_s, 3),
            "first_x0_s": _stats(p.first_s, 3), "fd": FD_TABLE.get((cfg.solver, nfe)) if lever.options.precision == "float32" else None,
            "load": _stats(p.loads, 2), "rounds": len(p.d_ms)}


def final_agreement(den: Preconditioner, config: RunConfig, options: FastOptions) -> float:
    """‖x_bf16 − x_fp32‖/‖x_fp32‖ of the final samples of one run: how far a precision moves the result."""
    from explorer.core.sampling import final_samples

    with torch.inference_mode():
        ref = final_samples(den, config.replace(precision="float32"))
        got = final_samples(network_variant(den, options), config.replace(precision="float32"))
    return float((got.double() - ref.double()).norm() / ref.double().norm())


def levers(den: Denoiser, cpu_bf16: bool) -> list[Lever]:
    """The rows, in order; each builds on the adopted rows above it."""
    from explorer.core.defaults import DEFAULT_NFE, DEFAULT_SOLVER, legacy_run_config

    legacy = legacy_run_config(den, "cpu")
    solver = legacy.replace(solver=DEFAULT_SOLVER, steps=DEFAULT_NFE)
    rows = [Lever("today: heun 35 NFE, float32, batch 16", legacy),
            Lever("no inference_mode (no_grad)", legacy, inference_mode=False, adopted=False, whole_run=False),
            Lever(f"+ {DEFAULT_SOLVER} {DEFAULT_NFE} NFE", solver),
            Lever("+ channels-last (float32)", solver, FastOptions(channels_last=True), adopted=False, whole_run=False),
            Lever("+ jit.freeze (oneDNN fusion, float32)", solver, jit_freeze=True, adopted=False, whole_run=False),
            Lever("+ 1 thread (float32)", solver, threads=1, adopted=False, whole_run=False)]
    if cpu_bf16:
        bf16 = FastOptions(precision="bfloat16")
        rows += [Lever("+ bfloat16 network", solver, bf16),
                 Lever("+ bfloat16 channels-last", solver, replace(bf16, channels_last=True), adopted=False),
                 Lever("+ bfloat16 jit.freeze", solver, bf16, jit_freeze=True, adopted=False, whole_run=False),
                 Lever("+ bfloat16, 1 thread", solver, bf16, threads=1, adopted=False),
                 Lever("+ bfloat16, first batch of 4", solver.replace(batch=4), bf16, adopted=False)]
    return rows


def compile_trial(den: Preconditioner, options: FastOptions, batch: int, budget_s: float) -> dict[str, Any]:
    """torch.compile of F on the CPU: compile seconds and D time (skipped past ``budget_s``)."""
    if budget_s <= 0:
        return {"skipped": "no compile budget"}
    variant = network_variant(den, replace(options, compile=True))
    x, sigma = torch.randn(batch, *den.shape), torch.full((batch,), 2.0)
    start = time.perf_counter()
    with torch.inference_mode():
        variant(x, sigma)
        compile_s = time.perf_counter() - start
        d_ms = median_ms(lambda: variant(x, sigma), 5)
    return {"compile_s": round(compile_s, 1), "d_ms": round(d_ms, 1), "precision": options.precision,
            "load": load_average()}


def markdown(results: dict[str, Any]) -> str:
    """The CPU table of the README: lever, D time, default-run time, first x₀, FD."""
    env = results["environment"]
    lines = [f"### The default run on a CPU: {env['device']} ({env.get('cpu_count')} cores, "
             f"native bf16: {'yes' if results.get('cpu_bf16') else 'no'}), torch {env['torch']}", "",
             "| lever | adopted | D ms (batch) | run s | first x₀ s | NFE | FD (10k) | load avg |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results.get("rows", []):
        fd = "–" if r.get("fd") is None else f"{r['fd']:.2f}"
        lines.append(f"| {r['lever']} | {'yes' if r['adopted'] else 'no'} | {_mm(r['d_ms'], 0)} ({r['batch']}) "
                     f"| {_mm(r['run_s'], 2)} | {_mm(r['first_x0_s'], 2)} | {r['nfe']} | {fd} | {_mm(r['load'], 1)} |")
    lines += ["", "Each row adds its lever to the adopted rows above it; rows marked \"no\" were tried and dropped. "
              "Each cell: median (minimum) over rounds; every round times every row once, round-robin, so that "
              "all rows see the same load; wall clock, one process, after a warm-up of each row. Rows without a run "
              "time were timed for D alone (their run follows NFE × D). FD: `checkpoints/fashion32-edm.md` (float32 on an H200; bf16 rows not scored, "
              "see the relative errors below)."]
    for key, value in results.get("bf16_rel_error", {}).items():
        lines.append(f"- bf16 network vs float32, final samples of {key}: relative error {value:.2e}")
    default = results.get("default")
    if default:
        lines += ["", f"Default run (`explorer.core.defaults.default_run_config`): {default['config']}; "
                      f"{default['run_s']:.2f} s, first x₀ {default['first_x0_s']:.2f} s, "
                      f"{default['vs_legacy']:.2f}× the time of the default before (Heun 35 NFE float32, "
                      f"{default['legacy_run_s']:.2f} s) in this process."]
    trial = results.get("compile")
    if trial:
        lines += ["", f"torch.compile (inductor, CPU): {trial}"]
    return "\n".join(lines) + "\n"


def _mm(stats: Optional[dict[str, float]], digits: int) -> str:
    """median (min), or – where the row has no such timing."""
    if not stats:
        return "–"
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f})"
