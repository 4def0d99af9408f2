"""Turn a :class:`RunConfig` and a denoiser's σ range into a :class:`Plan`.

This is where SPEC §1–2 meet: the nominal σ range (default or user's, clamped to the
denoiser), the VP β's from that range, the grid of the chosen discretization, the final
step convention, the per-step orders, and the NFE the run will spend.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from explorer.core.config import RunConfig
from explorer.core.discretization import nominal_sigma_range, time_grid
from explorer.core.grids import explicit_plan, shifted_times
from explorer.core.process import Process, make_schedule, resolve_process_names
from explorer.core.solvers import SolverInfo, get_solver
from explorer.core.solvers.context import Plan
from explorer.core.solvers.rules import GridRequest, fast_orders

__all__ = ["fast_orders", "make_process", "plan_run", "predicted_nfe", "resolve_steps", "run_sigma_range"]

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
    best = info.rule.steps_for_budget(config.nfe, config.final, config.options)
    if best is None:
        need = info.nfe(1, config.final == "zero", config.options) + (config.final == "denoise")
        raise ValueError(f"An NFE budget of {config.nfe} is too small for {info.name} (it needs at least {need}).")
    return best


def plan_run(
    config: RunConfig,
    model_range: tuple[float, float] = (0.0, math.inf),
    round_sigma: RoundSigma = None,
) -> Plan:
    """Everything about a run that is known before the first evaluation; the solver's
    step rule lays out the grid, the per-step orders and the NFE."""
    info = get_solver(config.solver)
    if config.sigmas is not None:
        return explicit_plan(config, info, make_process)
    if info.adaptive and config.nfe is not None:
        raise ValueError(f"{info.name} chooses its own steps; set rtol/atol instead of an NFE budget.")
    lo, hi = run_sigma_range(config, model_range)
    process = make_process(config, (lo, hi))

    def grid(n: int) -> list[float]:
        try:
            t = time_grid(config.disc, n, process, lo, hi, config.rho, round_sigma, config.epsilon_s).tolist()
        except (OverflowError, ZeroDivisionError):
            t = [math.nan]
        return shifted_times(_checked_grid(t, config.disc, config.rho), process, config.shift)

    request = GridRequest(grid, float(process.sigma_inv(hi)), float(process.sigma_inv(lo)), config.final, config.disc,
                          config.lower_order_final, config.options, lambda t: float(process.sigma(t)))
    steps = None if info.adaptive and not info.rule.fixed_grid else resolve_steps(config, info)
    t, orders, nfe = info.rule.layout(steps, request)
    return Plan(process, (lo, hi), t, orders, config.final, nfe, config.disc)


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
