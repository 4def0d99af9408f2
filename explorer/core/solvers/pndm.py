"""Adams–Bashforth in σ on the EDM ODE: iPNDM, iPNDM_v and PLMS (PNDM without Runge–Kutta).

In the unscaled state y = x/s the probability-flow ODE reads dy/dσ = ε̂(y, σ), so a
linear multistep method in σ is y_{n+1} = y_n + (σ_{n+1} − σ_n) Σ_j w_j ε̂_{n−j}.

* ``ipndm`` (Zhang & Chen 2023; diff-sampler, diffusers' ``IPNDMScheduler``): the
  fixed-step weights 1; (3, −1)/2; (23, −16, 5)/12; (55, −59, 37, −9)/24, ramping up
  from Euler, on any grid. They are the Adams–Bashforth weights of *uniform* steps, so
  on a uniform grid the method has order 4, and on EDM's ρ = 7 grid, whose steps change
  size by a fixed factor, its global order drops to about 2 — yet it is among the best
  at very low NFE.
* ``ipndm-v``: the variable-step weights (the Lagrange polynomial through the last
  outputs in σ, integrated exactly: order 4 on every smooth grid).
* ``plms`` (diffusers' ``PNDMScheduler(skip_prk_steps=True)``): a Heun first step (its
  second evaluation is not kept), then the same fixed weights from order 2 on;
  N + 1 evaluations for N steps.
* ``pndm`` (Liu et al. 2022; ``PNDMScheduler`` with its pseudo Runge–Kutta start): three
  classical RK4 steps in σ (ε̂ at the start, twice at the midpoint, at the end; only the
  first kept), then fixed-step AB4; N + 9 evaluations. The midpoint is the run's
  t-midpoint; diffusers takes it at the integer train timestep t − ⌊T/N/2⌋, which a σ grid
  does not carry, so the two agree only where those coincide.

The step to σ = 0 is a multistep step as well (it needs no evaluation at σ = 0), as in
both reference implementations.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of
from explorer.core.solvers.deis import deis_coefficients
from explorer.core.solvers.rules import PRK_STEPS

AB_WEIGHTS = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def _eps(ctx: SolverContext, x: torch.Tensor, t: float) -> torch.Tensor:
    """ε̂ = (y − D(y; σ))/σ at the scaled state x (one evaluation)."""
    y = x / ctx.s(t)
    return (y - ctx.denoise(x, t)) / ctx.sigma(t)


def _ab_loop(ctx: SolverContext, variable: bool) -> Iterator[StepEvent]:
    orders = ctx.plan.orders or []
    x = ctx.x0
    ts: list[float] = []
    eps: list[torch.Tensor] = []
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        ts, eps = ([t_cur] + ts)[:4], ([_eps(ctx, x, t_cur)] + eps)[:4]
        k = min(orders[i], len(eps))
        sig, sig_next = ctx.sigma(t_cur), (ctx.sigma(t_next) if t_next > 0 else 0.0)
        if variable:
            weights = deis_coefficients(ctx, ts[:k], t_next, "rho")
        else:
            weights = [(sig_next - sig) * w for w in AB_WEIGHTS[k]]
        y = x / ctx.s(t_cur)
        for w, e in zip(weights, eps):
            y = y + w * e
        x = ctx.s(t_next) * y
        yield ctx.event(i + 1, t_next, x, k)


def ipndm(ctx: SolverContext) -> Iterator[StepEvent]:
    """iPNDM: fixed-step Adams–Bashforth weights in σ, Euler warm-up."""
    return _ab_loop(ctx, variable=False)


def ipndm_v(ctx: SolverContext) -> Iterator[StepEvent]:
    """iPNDM_v: variable-step Adams–Bashforth weights in σ, Euler warm-up."""
    return _ab_loop(ctx, variable=True)


def _started_ab(ctx: SolverContext, start_steps: int, start: Callable[..., torch.Tensor], start_order: int) -> Iterator[StepEvent]:
    """Fixed-step AB in σ (orders ramping to 4) after ``start_steps`` steps of ``start``, which
    returns the ε̂ to step with from (y, ε̂ at the start, σ, t_cur, t_next) and may evaluate more."""
    x = ctx.x0
    eps: list[torch.Tensor] = []
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        sig, sig_next = ctx.sigma(t_cur), (ctx.sigma(t_next) if t_next > 0 else 0.0)
        y = x / ctx.s(t_cur)
        e1 = _eps(ctx, x, t_cur)
        eps = ([e1] + eps)[:4]
        if i < start_steps and t_next > 0:
            k, combined = start_order, start(y, e1, sig, t_cur, t_next)
        else:
            k = len(eps)
            combined = sum(w * past for w, past in zip(AB_WEIGHTS[k], eps))
        x = ctx.s(t_next) * (y + (sig_next - sig) * combined)
        yield ctx.event(i + 1, t_next, x, k)


def plms(ctx: SolverContext) -> Iterator[StepEvent]:
    """diffusers' PNDMScheduler with skip_prk_steps: Heun first, then fixed AB2, AB3, AB4 in σ."""

    def heun(y, e1, sig, t_cur, t_next):
        e_end = _eps(ctx, ctx.s(t_next) * (y + (ctx.sigma(t_next) - sig) * e1), t_next)
        return 0.5 * (e1 + e_end)

    return _started_ab(ctx, 1, heun, 2)


def pndm(ctx: SolverContext) -> Iterator[StepEvent]:
    """PNDM: pseudo RK4 (in σ, on ε̂) for the first three steps, then fixed-step AB4."""

    def runge_kutta(y, e1, sig, t_cur, t_next):
        t_mid = 0.5 * (t_cur + t_next)
        sig_mid, s_mid = ctx.sigma(t_mid), ctx.s(t_mid)
        e2 = _eps(ctx, s_mid * (y + (sig_mid - sig) * e1), t_mid)
        e3 = _eps(ctx, s_mid * (y + (sig_mid - sig) * e2), t_mid)
        e4 = _eps(ctx, ctx.s(t_next) * (y + (ctx.sigma(t_next) - sig) * e3), t_next)
        return (e1 + 2 * e2 + 2 * e3 + e4) / 6

    return _started_ab(ctx, PRK_STEPS, runge_kutta, 4)
