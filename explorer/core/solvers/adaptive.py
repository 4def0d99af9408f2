"""Adaptive DPM-Solver-12 and -23: embedded pairs sharing evaluations, in λ.

As the official DPM-Solver's ``dpm_solver_adaptive``: the lower-order solution
(DPM-Solver-1, resp. DPM-Solver-2 with r₁ = ⅓) reuses the evaluations of the higher
one; δ = max(atol, rtol·max(|x_low|, |x_prev|)); E is the largest per-sample RMS of
(x_high − x_low)/δ; accept if E ≤ 1; h ← min(θ h E^{−1/order}, λ_end − λ).
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext
from explorer.core.solvers.dpm import eps_hat, inner_outputs, point, point_at_lambda, singlestep_update
from explorer.core.solvers.options import ADAPTIVE_ATOL, ADAPTIVE_RTOL

H_INIT = 0.05
THETA = 0.9
T_ERR = 1e-5
MAX_ATTEMPTS = 100_000


def _error(x_low: torch.Tensor, x_high: torch.Tensor, x_prev: torch.Tensor, atol: float, rtol: float) -> float:
    delta = torch.clamp(rtol * torch.maximum(x_low.abs(), x_prev.abs()), min=atol)
    ratio = ((x_high - x_low) / delta).reshape(x_low.shape[0], -1)
    return float(ratio.square().mean(dim=1).sqrt().max())


def _pair(ctx: SolverContext, order: int, x: torch.Tensor, s, t) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_low, x_high) of one attempted step; ``order`` evaluations of D."""
    h = t.lam - s.lam
    nodes = [point_at_lambda(ctx, s.lam + (j / order) * h) for j in range(1, order)]
    ms = inner_outputs(ctx, x, s, nodes[:-1], [eps_hat(ctx, x, s)], data_form=False)
    x_low = singlestep_update(x, s, t, nodes[:-1], ms, data_form=False)
    ms = inner_outputs(ctx, x, s, nodes, ms, data_form=False)
    return x_low, singlestep_update(x, s, t, nodes, ms, data_form=False)


def _adaptive(ctx: SolverContext, order: int) -> Iterator[StepEvent]:
    cfg = ctx.config
    atol = cfg.atol if cfg.atol is not None else ADAPTIVE_ATOL
    rtol = cfg.rtol if cfg.rtol is not None else ADAPTIVE_RTOL
    t_start, t_end = ctx.plan.t[0], ctx.plan.t[-2] if ctx.plan.t[-1] == 0 else ctx.plan.t[-1]
    lam_end = ctx.lam(t_end)
    s = point(ctx, t_start)
    x, x_prev, h = ctx.x0, ctx.x0, H_INIT
    index, attempts = 0, 0
    while abs(s.t - t_end) > T_ERR:
        attempts += 1
        if attempts > MAX_ATTEMPTS:
            raise ValueError(f"{ctx.config.solver} made {MAX_ATTEMPTS} attempts without reaching σ_min; loosen rtol/atol.")
        t = point_at_lambda(ctx, s.lam + h)
        x_low, x_high = _pair(ctx, order, x, s, t)
        err = _error(x_low, x_high, x_prev, atol, rtol)
        if not math.isfinite(err):  # NaN compares false with everything: it would be retried forever
            raise ValueError(f"{cfg.solver}: the error estimate of step {index + 1} (from σ = {ctx.sigma(s.t):.6g} "
                             f"to σ = {ctx.sigma(t.t):.6g}) is {err}; the denoiser returned NaN or infinity there.")
        if err <= 1.0:
            x, x_prev, s = x_high, x_low, t
            index += 1
            yield ctx.event(index, t.t, x, order)
        # E^(-1/order) is rounded to float32 as the official implementation does.
        growth = float(np.float32(err ** (-1.0 / order))) if err > 0 else math.inf
        h = min(THETA * h * growth, lam_end - s.lam)
    if ctx.plan.t[-1] == 0:
        x = ctx.final_denoise(x, s.t)
        yield ctx.event(index + 1, 0.0, x, 1)


def dpm_solver_12(ctx: SolverContext) -> Iterator[StepEvent]:
    """Adaptive DPM-Solver-12 (orders 1 and 2)."""
    return _adaptive(ctx, 2)


def dpm_solver_23(ctx: SolverContext) -> Iterator[StepEvent]:
    """Adaptive DPM-Solver-23 (orders 2 and 3)."""
    return _adaptive(ctx, 3)
