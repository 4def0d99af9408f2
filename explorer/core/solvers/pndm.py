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
  t-midpoint. diffusers takes it at the integer train timestep t − ⌊T/N/2⌋ instead; with
  ``prk_nodes="grid"`` a Runge–Kutta step covers two grid intervals and its midpoint is the
  grid point between them, where the diffusers preset puts that timestep (N + 6 evaluations
  for N grid intervals).

Both take an option ``combine`` for what the weights act on. ``eps`` (default) combines
ε̂, each taken at its own node: a weighted sum of the ODE's slopes. ``v`` is diffusers'
convention for v-prediction networks: it keeps the network's raw v = (ε̂ − σ x̂₀)/√(1+σ²)
of every evaluation, combines those, and turns the sum into ε with the *current* step's σ
and state (ε = (v + σ y/√(1+σ²))/√(1+σ²)). The weights sum to 1, so that is each earlier v
converted as if it had been evaluated at the current node, which is not the slope there.

The step to σ = 0 is a multistep step as well (it needs no evaluation at σ = 0), as in
both reference implementations.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of
from explorer.core.solvers.deis import deis_coefficients
from explorer.core.solvers.rules import PRK_SPAN, prk_steps

AB_WEIGHTS = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


class _Outputs:
    """One evaluation as the multistep weights see it (option ``combine``): ε̂, or the raw v.

    The v form is there to walk diffusers' PNDMScheduler loop on v-prediction models, which
    keeps raw v's and converts their sum at the current step (module docstring); ε̂ is the
    explorer's own choice and the default.
    """

    def __init__(self, ctx: SolverContext) -> None:
        self.ctx = ctx
        self.v = ctx.option("combine", "eps") == "v"

    def evaluate(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """ε̂ = (y − x̂₀)/σ at the scaled state x, or v = (ε̂ − σ x̂₀)/√(1+σ²) (one evaluation)."""
        ctx = self.ctx
        y, sig = x / ctx.s(t), ctx.sigma(t)
        denoised = ctx.denoise(x, t)
        eps = (y - denoised) / sig
        return (eps - sig * denoised) / math.sqrt(1 + sig * sig) if self.v else eps

    def slope(self, combined: torch.Tensor, y: torch.Tensor, sig: float) -> torch.Tensor:
        """The ε a step from (y, σ) takes for a weighted sum of outputs (weights summing to 1)."""
        if not self.v:
            return combined
        c = 1 / math.sqrt(1 + sig * sig)
        return c * combined + (c * c * sig) * y


def _ab_loop(ctx: SolverContext, variable: bool) -> Iterator[StepEvent]:
    orders = ctx.plan.orders or []
    out = _Outputs(ctx)  # ipndm has no combine option: ε̂
    x = ctx.x0
    ts: list[float] = []
    eps: list[torch.Tensor] = []
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        ts, eps = ([t_cur] + ts)[:4], ([out.evaluate(x, t_cur)] + eps)[:4]
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


StartStep = Callable[[torch.Tensor, torch.Tensor, float, int], tuple[torch.Tensor, list[StepEvent]]]


def _started_ab(ctx: SolverContext, out: _Outputs, start: StartStep, start_steps: int, span: int,
                start_order: int) -> Iterator[StepEvent]:
    """Fixed-step AB in σ (orders ramping to 4) after ``start_steps`` steps of ``start``.

    A start step covers ``span`` grid intervals from grid index i; ``start(y, r1, σ, i)``
    gets the state y and the output r1 at t_i, may evaluate more, and returns the combined
    output to step with and the events of grid points it passes on the way. Only r1 of a
    start step joins the multistep history (as in both reference implementations).
    """
    t = ctx.plan.t
    x, history, i = ctx.x0, [], 0
    while i < len(t) - 1:
        t_cur = t[i]
        sig, y = ctx.sigma(t_cur), x / ctx.s(t_cur)
        r1 = out.evaluate(x, t_cur)
        history = ([r1] + history)[:4]
        if i < start_steps * span:
            j, k = i + span, start_order
            combined, passed = start(y, r1, sig, i)
        else:
            j, k, passed = i + 1, len(history), []
            combined = sum(w * past for w, past in zip(AB_WEIGHTS[k], history))
        t_next = t[j]
        sig_next = ctx.sigma(t_next) if t_next > 0 else 0.0
        x = ctx.s(t_next) * (y + (sig_next - sig) * out.slope(combined, y, sig))
        yield from passed
        yield ctx.event(j, t_next, x, k)
        i = j


def plms(ctx: SolverContext) -> Iterator[StepEvent]:
    """diffusers' PNDMScheduler with skip_prk_steps: Heun first, then fixed AB2, AB3, AB4 in σ."""
    out, t = _Outputs(ctx), ctx.plan.t

    def heun(y, r1, sig, i):
        t_next = t[i + 1]
        r_end = out.evaluate(ctx.s(t_next) * (y + (ctx.sigma(t_next) - sig) * out.slope(r1, y, sig)), t_next)
        return 0.5 * (r1 + r_end), []

    starts = 0 if len(t) == 2 and t[-1] == 0 else 1  # a single step to σ = 0 is the multistep Euler step
    return _started_ab(ctx, out, heun, starts, 1, 2)


def pndm(ctx: SolverContext) -> Iterator[StepEvent]:
    """PNDM: pseudo RK4 (in σ, on ε̂) for the first three steps, then fixed-step AB4."""
    out, t = _Outputs(ctx), ctx.plan.t
    nodes = ctx.option("prk_nodes", "midpoint")
    on_grid = nodes == "grid"

    def runge_kutta(y, r1, sig, i):
        t_mid, t_end = (t[i + 1], t[i + 2]) if on_grid else (0.5 * (t[i] + t[i + 1]), t[i + 1])
        sig_mid, s_mid = ctx.sigma(t_mid), ctx.s(t_mid)
        r2 = out.evaluate(s_mid * (y + (sig_mid - sig) * out.slope(r1, y, sig)), t_mid)
        x_mid = s_mid * (y + (sig_mid - sig) * out.slope(r2, y, sig))
        passed = [ctx.event(i + 1, t_mid, x_mid, 4)] if on_grid else []  # the state r3 is taken at
        r3 = out.evaluate(x_mid, t_mid)
        r4 = out.evaluate(ctx.s(t_end) * (y + (ctx.sigma(t_end) - sig) * out.slope(r3, y, sig)), t_end)
        return (r1 + 2 * r2 + 2 * r3 + r4) / 6, passed

    starts = prk_steps(len(t) - 1, t[-1] == 0, {"prk_nodes": nodes})
    return _started_ab(ctx, out, runge_kutta, starts, PRK_SPAN[nodes], 4)
