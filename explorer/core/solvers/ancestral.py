"""Euler ancestral: an Euler step down to σ_down, then fresh noise up to σ_{i+1}.

As k-diffusion's ``sample_euler_ancestral``, generalized to any s(t) by working in
unscaled space y = x/s: σ_up = min(σ_next, η sqrt(σ_next²(σ²−σ_next²)/σ²)),
σ_down = sqrt(σ_next² − σ_up²). η = 0 is plain Euler in σ.
"""
from __future__ import annotations

import math
from typing import Iterator

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of


def ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) of an ancestral step from σ to σ_next."""
    if sigma_next == 0:
        return 0.0, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - up**2), up


def euler_ancestral(ctx: SolverContext) -> Iterator[StepEvent]:
    eta, s_noise = ctx.option("eta"), ctx.option("s_noise")
    x = ctx.x0
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        sigma = ctx.sigma(t_cur)
        sigma_next = ctx.sigma(t_next) if t_next > 0 else 0.0
        d = ctx.denoise(x, t_cur)
        y = x / ctx.s(t_cur)
        down, up = ancestral_split(sigma, sigma_next, eta)
        y = y + ((down - sigma) / sigma) * (y - d)
        if sigma_next > 0 and up > 0:
            y = y + (up * s_noise) * ctx.randn_like(y)
        x = ctx.s(t_next) * y
        yield ctx.event(i + 1, t_next, x, 1)


def ddpm(ctx: SolverContext) -> Iterator[StepEvent]:
    """DDPM ancestral sampling (Ho et al. 2020) on any grid: the posterior q(x_t | x_s, x̂₀)
    with its own variance (diffusers' ``variance_type="fixed_small"``). In the unscaled
    state, with r = σ_t/σ_s: y_t = r² y_s + (1 − r²) D + σ_t √(1 − r²) z — DDIM with η = 1
    written in DDPM's posterior form."""
    x = ctx.x0
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        d = ctx.denoise(x, t_cur)
        if t_next == 0:
            x = ctx.s(0.0) * d
        else:
            r2 = (ctx.sigma(t_next) / ctx.sigma(t_cur)) ** 2
            y = r2 * (x / ctx.s(t_cur)) + (1.0 - r2) * d
            y = y + (ctx.sigma(t_next) * math.sqrt(1.0 - r2)) * ctx.randn_like(y)
            x = ctx.s(t_next) * y
        yield ctx.event(i + 1, t_next, x, 1)
