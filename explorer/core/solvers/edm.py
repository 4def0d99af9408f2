"""Euler and Heun on the probability-flow ODE, with EDM's churn (EDM Algorithms 1 and 2).

The update order follows NVlabs EDM's ``ablation_sampler``: optional noise increase to
t̂, an Euler step from t̂, and Heun's correction at t̂ + αh, except on the step to
σ = 0, which is always Euler so that D is never evaluated at σ = 0.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional

import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of


def churn(ctx: SolverContext, x: torch.Tensor, t_cur: float, steps: Optional[int] = None) -> tuple[torch.Tensor, float]:
    """Raise the noise level from σ(t) to σ(t)(1 + γ) (EDM Algorithm 2, lines 4–6).

    With churn 0 the state is left untouched (no round trip through σ⁻¹ and no noise is
    drawn), so the deterministic samplers are exactly deterministic. γ = S_churn/N with N
    the run's steps, or ``steps`` where a solver's steps are not the grid's intervals.
    """
    s_churn, s_min, s_max, s_noise = (ctx.option(k) for k in ("churn", "s_min", "s_max", "s_noise"))
    if s_churn <= 0:
        return x, t_cur
    sigma = ctx.sigma(t_cur)
    n = ctx.plan.n_steps if steps is None else steps
    gamma = min(s_churn / n, math.sqrt(2) - 1) if s_min <= sigma <= s_max else 0.0
    noise = ctx.randn_like(x)  # drawn every step, as EDM does, so streams stay aligned
    t_hat = ctx.round_t(sigma + gamma * sigma) if gamma > 0 else t_cur
    sigma_hat = ctx.sigma(t_hat)
    s_hat = ctx.s(t_hat)
    spread = math.sqrt(max(sigma_hat**2 - sigma**2, 0.0))
    x_hat = (s_hat / ctx.s(t_cur)) * x + (spread * s_hat * s_noise) * noise
    return x_hat, t_hat


def _edm_loop(ctx: SolverContext, heun: bool) -> Iterator[StepEvent]:
    alpha = ctx.option("alpha", 1.0)
    x = ctx.x0
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        x_hat, t_hat = churn(ctx, x, t_cur)
        h = t_next - t_hat
        d_cur = ctx.ode_derivative(x_hat, t_hat, ctx.denoise(x_hat, t_hat))
        if not heun or t_next == 0:
            x = x_hat.add(d_cur, alpha=h)
            order = 1
        else:
            # With α = 1 the second point is t_next itself (computed as t̂ + h it can round to 0
            # when the σ range spans many orders of magnitude).
            t_prime = t_next if alpha == 1 else t_hat + alpha * h
            x_prime = x_hat.add(d_cur, alpha=alpha * h)
            d_prime = ctx.ode_derivative(x_prime, t_prime, ctx.denoise(x_prime, t_prime))
            w = 1 / (2 * alpha)
            x = x_hat.add(d_cur, alpha=h * (1 - w)).add_(d_prime, alpha=h * w)
            order = 2
        yield ctx.event(i + 1, t_next, x, order)


def euler(ctx: SolverContext) -> Iterator[StepEvent]:
    """Euler's method in t (with churn: EDM's stochastic sampler, first order)."""
    return _edm_loop(ctx, heun=False)


def heun(ctx: SolverContext) -> Iterator[StepEvent]:
    """Heun's second-order method in t, α = 1 the trapezoid rule (with churn: EDM Algorithm 2)."""
    return _edm_loop(ctx, heun=True)
