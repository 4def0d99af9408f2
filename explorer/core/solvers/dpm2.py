"""DPM-2, the midpoint sampler of k-diffusion (``sample_dpm_2``) and diffusers' KDPM2 scheduler.

It works on the unscaled state y = x/s, where the probability-flow ODE of every process is
dy/dσ = ε̂(y, σ) = (y − D(y; σ))/σ. A step from σ_i to σ_{i+1}:

    σ_mid = exp((ln σ_i + ln σ_{i+1})/2)                (the geometric mean)
    y_mid = y_i + (σ_mid − σ_i) ε̂(y_i, σ_i)             (Euler to the midpoint)
    y_{i+1} = y_i + (σ_{i+1} − σ_i) ε̂(y_mid, σ_mid)     (the full step with the midpoint's slope)

and the step to σ = 0 is plain Euler (one evaluation), so D is never called at σ = 0. The
node sits at the geometric, not the arithmetic, mean of σ; its offset from the middle of
the step shrinks with the step, so the method keeps order 2 (Karras et al. 2022 write it
as their Algorithm 2's second-order step; Lu et al. 2022's DPM-Solver-2 is the same idea
in λ).

``midpoint=grid`` takes the midpoints from the run's explicit σ grid instead: its points
alternate σ_0, σ_mid,1, σ_1, σ_mid,2, … (as diffusers' ``KDPM2DiscreteScheduler`` lays out
its σ's and timesteps), each grid interval is one evaluation, and the Euler state at each
midpoint is recorded as a state of the trajectory — it is the sample diffusers' loop holds
between its two calls of a step. A pair whose end would be σ = 0 is never formed: the
steps to σ = 0 stay Euler. The diffusers preset needs this because diffusers computes the
midpoints (and their fractional network timesteps) in float32; given as grid points, they
are the very numbers its loop uses.

EDM's churn (S_churn, S_min, S_max, S_noise), which ``sample_dpm_2`` also takes, raises
σ_i to σ̂ = σ_i(1 + γ) before the step; the midpoint is then that of σ̂ and σ_{i+1}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext
from explorer.core.solvers.edm import churn


@dataclass(frozen=True)
class Step:
    """One DPM-2 step: from grid point ``start`` to ``end``, through the grid point ``mid``
    (midpoint=grid), a geometric midpoint (``mid`` None, ``euler`` False) or none (Euler)."""

    start: int
    end: int
    mid: Optional[int] = None
    euler: bool = False


def dpm2_steps(t: list[float], from_grid: bool) -> list[Step]:
    """The run's steps over the plan's grid ``t`` (grid indices)."""
    n = len(t) - 1
    if not from_grid:
        return [Step(i, i + 1, euler=t[i + 1] == 0) for i in range(n)]
    steps, j = [], 0
    while j < n:
        if j + 2 <= n and t[j + 2] > 0:
            steps.append(Step(j, j + 2, mid=j + 1))
            j += 2
        else:
            steps.append(Step(j, j + 1, euler=True))
            j += 1
    return steps


def _slope(ctx: SolverContext, y: torch.Tensor, t: float) -> torch.Tensor:
    """ε̂ = dy/dσ = (y − D(y; σ))/σ at the unscaled state y (one evaluation)."""
    return (y - ctx.denoise(ctx.s(t) * y, t)) / ctx.sigma(t)


def dpm2(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-2 over the plan's grid, with geometric or grid midpoints (option ``midpoint``)."""
    t = ctx.plan.t
    steps = dpm2_steps(t, ctx.option("midpoint", "geometric") == "grid")
    x = ctx.x0
    for step in steps:
        x_hat, t_hat = churn(ctx, x, t[step.start], len(steps))
        sig, t_end = ctx.sigma(t_hat), t[step.end]
        y = x_hat / ctx.s(t_hat)
        eps = _slope(ctx, y, t_hat)
        sig_end = ctx.sigma(t_end) if t_end > 0 else 0.0
        if step.euler:
            x = ctx.s(t_end) * (y + (sig_end - sig) * eps)
            yield ctx.event(step.end, t_end, x, 1)
            continue
        if step.mid is not None:
            t_mid = t[step.mid]
        else:
            t_mid = ctx.sigma_inv(math.exp(0.5 * (math.log(sig) + math.log(sig_end))))
        sig_mid = ctx.sigma(t_mid)
        y_mid = y + (sig_mid - sig) * eps
        if step.mid is not None:
            yield ctx.event(step.mid, t_mid, ctx.s(t_mid) * y_mid, 1)
        eps_mid = _slope(ctx, y_mid, t_mid)
        x = ctx.s(t_end) * (y + (sig_end - sig) * eps_mid)
        yield ctx.event(step.end, t_end, x, 2)
