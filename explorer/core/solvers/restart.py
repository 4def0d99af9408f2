"""Restart sampling (Xu et al. 2023): EDM's Heun on the main path, and for each restart
interval [σ_min, σ_max], K times a forward jump with fresh noise followed by Heun back down.

The jump adds √(σ_max² − σ_min²)·z (z from the run's own noise streams, so runs are
reproducible per sample), which undoes the contraction the ODE applies to accumulated
errors; the Heun steps inside the interval follow EDM's ρ = 7 spacing in σ. Each σ_min is
snapped to the nearest point of the main grid after the first (σ = 0 never), and an
interval's restarts run when the main path reaches that point, so with several intervals
(the paper's ImageNet setting) the high ones come first. Jumps are recorded as steps of
their own (order 0, σ rising), so the trajectory shows them.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of
from explorer.core.solvers.rules import RestartInterval, restart_schedule


def _heun(ctx: SolverContext, x: torch.Tensor, t_cur: float, t_next: float) -> tuple[torch.Tensor, int]:
    """One Heun step in t (Euler on the step to σ = 0)."""
    h = t_next - t_cur
    d_cur = ctx.ode_derivative(x, t_cur, ctx.denoise(x, t_cur))
    x_next = x + h * d_cur
    if t_next == 0:
        return x_next, 1
    d_next = ctx.ode_derivative(x_next, t_next, ctx.denoise(x_next, t_next))
    return x + (0.5 * h) * (d_cur + d_next), 2


def _interval(ctx: SolverContext, sigma_hi: float, sigma_lo: float, n: int, rho: float = 7.0) -> list[float]:
    """t of n Heun steps from σ_hi down to σ_lo, EDM-spaced in σ (ends exactly at the grid point)."""
    a, b = sigma_hi ** (1 / rho), sigma_lo ** (1 / rho)
    return [ctx.sigma_inv((a + i / n * (b - a)) ** rho) for i in range(n + 1)]


def restart(ctx: SolverContext) -> Iterator[StepEvent]:
    """Heun on the grid; at each interval's grid point, K × (jump up to σ_max, Heun back down)."""
    t = ctx.plan.t
    schedule = restart_schedule(t, ctx.sigma, ctx.config.options)
    x, index = ctx.x0, 0
    last_denoised = None

    def heun_event(a: float, b: float) -> StepEvent:
        nonlocal x, index, last_denoised
        x, order = _heun(ctx, x, a, b)
        index += 1
        ev = ctx.event(index, b, x, order)
        last_denoised = ev.denoised
        return ev

    def restarts(t_grid: float, interval: RestartInterval) -> Iterator[StepEvent]:
        nonlocal x, index
        sigma_lo, sigma_hi = ctx.sigma(t_grid), interval.sigma_max
        inner = _interval(ctx, sigma_hi, sigma_lo, interval.steps)
        inner[-1] = t_grid
        for _ in range(interval.k):
            y = x / ctx.s(t_grid) + math.sqrt(sigma_hi**2 - sigma_lo**2) * ctx.randn_like(x)
            x = ctx.s(inner[0]) * y
            index += 1
            jump = ctx.event(index, inner[0], x, 0)
            jump.denoised = last_denoised  # no evaluation at a jump: the last x̂₀ stands
            yield jump
            for _, a, b in steps_of(inner):
                yield heun_event(a, b)

    for i, t_cur, t_next in steps_of(t):
        yield heun_event(t_cur, t_next)
        for _, interval in (pair for pair in schedule if pair[0] == i + 1):
            yield from restarts(t_next, interval)
