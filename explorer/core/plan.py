"""Turn a :class:`RunConfig` and a denoiser's σ range into a :class:`Plan`.

This is where SPEC §1–2 meet: the nominal σ range (default or user's, clamped to the
denoiser), the VP β's from that range, the grid of the chosen discretization, the final
step convention, the per-step orders, and the NFE the run will spend.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Optional

import torch

from explorer.core.config import RunConfig
from explorer.core.discretization import nominal_sigma_range, time_grid
from explorer.core.grids import explicit_plan, shifted_times
from explorer.core.process import Process, make_schedule, resolve_process_names
from explorer.core.solvers import SolverInfo, get_solver
from explorer.core.solvers.context import Plan

RoundSigma = Optional[Callable[[torch.Tensor], torch.Tensor]]


def make_process(config: RunConfig, sigma_range: tuple[float, float]) -> Process:
    sched, scal = resolve_process_names(config.process, config.sigma_schedule, config.scaling)
    return Process(make_schedule(sched, sigma_range[0], sigma_range[1], config.epsilon_s), scal)


def run_sigma_range(config: RunConfig, model_range: tuple[float, float] = (0.0, math.inf)) -> tuple[float, float]:
    sched, _ = resolve_process_names(config.process, config.sigma_schedule, config.scaling)
    return nominal_sigma_range(config.disc, sched, config.sigma_min, config.sigma_max, model_range, config.epsilon_s)


def resolve_steps(config: RunConfig, info: SolverInfo) -> int:
    """The step count: given, or the largest whose NFE fits the budget (SPEC §2)."""
    if config.nfe is None:
        assert config.steps is not None or info.adaptive
        return config.steps or 1
    if info.family == "fast":
        return config.nfe
    extra = 1 if config.final == "denoise" else 0
    to_zero = config.final == "zero"
    best = None
    for n in itertools.count(1):
        spent = info.nfe(n, to_zero) + extra
        if spent > config.nfe:
            break
        best = n
    if best is None:
        need = info.nfe(1, to_zero) + extra
        raise ValueError(f"An NFE budget of {config.nfe} is too small for {info.name} (it needs at least {need}).")
    return best


def fast_orders(budget: int) -> list[int]:
    """DPM-Solver-fast's orders for ``budget`` evaluations (SPEC §4)."""
    if budget <= 0:
        return []
    k = budget // 3 + 1
    rem = budget % 3
    if rem == 0:
        return [3] * (k - 2) + [2, 1]
    if rem == 1:
        return [3] * (k - 1) + [1]
    return [3] * (k - 1) + [2]


def plan_run(
    config: RunConfig,
    model_range: tuple[float, float] = (0.0, math.inf),
    round_sigma: RoundSigma = None,
) -> Plan:
    """Everything about a run that is known before the first evaluation."""
    info = get_solver(config.solver)
    if config.sigmas is not None:
        return explicit_plan(config, info, make_process)
    if info.adaptive and config.nfe is not None:
        raise ValueError(f"{info.name} chooses its own steps; set rtol/atol instead of an NFE budget.")
    lo, hi = run_sigma_range(config, model_range)
    process = make_process(config, (lo, hi))
    to_zero = config.final == "zero"
    extra = 1 if config.final == "denoise" else 0
    tail = [0.0] if to_zero else []

    def grid(n: int, disc: str = config.disc) -> list[float]:
        try:
            t = time_grid(disc, n, process, lo, hi, config.rho, round_sigma, config.epsilon_s).tolist()
        except (OverflowError, ZeroDivisionError):
            t = [math.nan]
        return shifted_times(_checked_grid(t, disc, config.rho), process, config.shift)

    if info.family == "fast":
        total = resolve_steps(config, info)
        budget = total - (0 if config.final == "sigma_min" else 1)
        orders = fast_orders(budget)
        if not orders:
            outer = grid(1)
        elif config.disc == "logsnr":
            outer = grid(len(orders) + 1)
        else:
            full = grid(budget + 1)
            outer = [full[j] for j in itertools.accumulate([0] + orders)]
        t = outer + tail
        return Plan(process, (lo, hi), t, orders + ([1] if to_zero else []), config.final, total, config.disc)
    if info.family == "adaptive":
        t = [float(process.sigma_inv(hi)), float(process.sigma_inv(lo))] + tail
        return Plan(process, (lo, hi), t, None, config.final, None, config.disc)
    steps = resolve_steps(config, info)
    t = grid(steps if to_zero else steps + 1) + tail
    nfe = info.nfe(steps, to_zero)
    return Plan(
        process, (lo, hi), t, info.step_orders(steps, config.lower_order_final), config.final,
        None if nfe is None else nfe + extra, config.disc,
    )


def _checked_grid(t: list[float], disc: str, rho: float) -> list[float]:
    """A usable grid is finite, positive and strictly decreasing; say why when it is not."""
    bad = any(not (math.isfinite(v) and v > 0) for v in t) or any(b >= a for a, b in zip(t, t[1:]))
    if bad:
        hint = f" (ρ = {rho:g} is too extreme for floating point)" if disc == "edm" else ""
        raise ValueError(f"The {disc} discretization gives no usable time steps for these settings{hint}; "
                         "change ρ, the σ range or the number of steps.")
    return t


def predicted_nfe(config: RunConfig, model_range: tuple[float, float] = (0.0, math.inf)) -> Optional[int]:
    """The NFE a run will spend, or None for adaptive solvers (shown before a run)."""
    return plan_run(config, model_range).nfe
