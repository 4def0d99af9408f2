"""DEIS (Zhang & Chen 2023): multistep exponential integrators with the noise prediction
ε̂ extrapolated by a Lagrange polynomial through the last k outputs (orders 1–3).

In the unscaled state y = x/s the probability-flow ODE is dy/dσ = ε̂(σ) exactly, so
one step is y_t = y_s + Σ_j c_j ε̂_j with c_j = ∫_{σ_s}^{σ_t} L_j(u) dσ. The variants
differ only in the variable u the polynomial lives in:

* ``t``: the run's time (the paper's tAB, as diff-sampler runs it; t = σ under EDM),
* ``rho``: u = σ (the paper's ρAB, ρ = σ/α = σ),
* ``logrho``: u = log σ (diffusers' ``DEISMultistepScheduler``, its only variant).

Order 1 is DDIM in every variant. ``rho`` and ``logrho`` are integrated exactly;
``t`` by 24-point Gauss–Legendre in t (exact for the EDM process, near machine
precision for VP/VE's smooth σ(t)).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from numpy.polynomial import Polynomial

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of
from explorer.core.solvers.dpm import eps_hat, point

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(24)


def _lagrange(nodes: Sequence[float], j: int) -> Polynomial:
    """The Lagrange basis polynomial that is 1 at nodes[j] and 0 at the others."""
    poly = Polynomial([1.0])
    for k, u in enumerate(nodes):
        if k != j:
            poly = poly * Polynomial([-u, 1.0]) / (nodes[j] - u)
    return poly


def _exp_moment(poly: Polynomial, a: float, b: float) -> float:
    """∫_a^b P(u) e^u du = [e^u (P − P′ + P″ − …)]_a^b."""
    total, term = Polynomial([0.0]), poly
    for k in range(poly.degree() + 1):
        total = total + (-1) ** k * term
        term = term.deriv()
    return float(math.exp(b) * total(b) - math.exp(a) * total(a))


def deis_coefficients(ctx: SolverContext, ts: Sequence[float], t_next: float, basis: str) -> list[float]:
    """c_j = ∫ L_j dσ from ts[0] (the current time) to t_next, for the past times ``ts``."""
    if basis == "logrho":
        nodes = [math.log(ctx.sigma(t)) for t in ts]
        a, b = nodes[0], math.log(ctx.sigma(t_next))
        return [_exp_moment(_lagrange(nodes, j), a, b) for j in range(len(ts))]
    if basis == "rho":
        nodes = [ctx.sigma(t) for t in ts]
        a, b = nodes[0], (ctx.sigma(t_next) if t_next > 0 else 0.0)
        out = []
        for j in range(len(ts)):
            integral = _lagrange(nodes, j).integ()
            out.append(float(integral(b) - integral(a)))
        return out
    half, mid = 0.5 * (t_next - ts[0]), 0.5 * (t_next + ts[0])
    tq = mid + half * _GL_NODES
    dsigma = ctx.process.sigma_deriv(torch.as_tensor(tq, dtype=torch.float64)).numpy()
    return [float(half * np.sum(_GL_WEIGHTS * _lagrange(list(ts), j)(tq) * dsigma)) for j in range(len(ts))]


def deis(ctx: SolverContext) -> Iterator[StepEvent]:
    """DEIS-k multistep: one evaluation per step, orders from the plan (warm-up 1, 2, …)."""
    basis = ctx.option("basis")
    orders = ctx.plan.orders or []
    x = ctx.x0
    ts: list[float] = []
    eps: list[torch.Tensor] = []
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        p = point(ctx, t_cur)
        if t_next == 0:
            x = ctx.final_denoise(x, t_cur)
            yield ctx.event(i + 1, t_next, x, 1)
            continue
        ts, eps = ([t_cur] + ts)[:3], ([eps_hat(ctx, x, p)] + eps)[:3]
        k = min(orders[i], len(ts))
        coefs = deis_coefficients(ctx, ts[:k], t_next, basis)
        s_next = ctx.s(t_next)
        y = x / p.alpha
        for c, e in zip(coefs, eps):
            y = y + c * e
        x = s_next * y
        yield ctx.event(i + 1, t_next, x, k)
