"""DDIM and the singlestep DPM-Solvers (Lu et al. 2022) in EDM's σ(t)/s(t) terms.

With α_t = s(t), σ̄_t = s(t)σ(t) and λ_t = −ln σ(t), the noise prediction is
ε̂(x, t) = (x − α_t D(x/α_t; σ(t)))/σ̄_t and the data prediction x̂₀ = D(x/α_t; σ(t)).
The update formulas are those of the official DPM-Solver (``dpmsolver`` solver type).
The step to σ = 0 is first order: x = s(0) D (SPEC §2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from explorer.core.discretization import interval_nodes
from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of


@dataclass(frozen=True)
class Point:
    """A time with its α (= s), σ̄ (= sσ) and λ, all floats."""

    t: float
    alpha: float
    sigma_bar: float
    lam: float


def point(ctx: SolverContext, t: float) -> Point:
    s, sigma = ctx.s(t), ctx.sigma(t)
    return Point(t, s, s * sigma, -math.log(sigma))


def point_at_lambda(ctx: SolverContext, lam: float) -> Point:
    return point(ctx, ctx.t_of_lambda(lam))


def eps_hat(ctx: SolverContext, x: torch.Tensor, p: Point) -> torch.Tensor:
    """Noise prediction ε̂(x, t) from one evaluation of D."""
    return (x - p.alpha * ctx.denoise(x, p.t)) / p.sigma_bar


def x0_hat(ctx: SolverContext, x: torch.Tensor, p: Point) -> torch.Tensor:
    """Data prediction x̂₀(x, t) = D(x/α_t; σ(t))."""
    return ctx.denoise(x, p.t)


# --------------------------------------------------------------------- noise form
def dpm1_update(x: torch.Tensor, s: Point, t: Point, eps_s: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-1: x_t = (α_t/α_s) x_s − σ̄_t (e^h − 1) ε̂_s."""
    h = t.lam - s.lam
    return (t.alpha / s.alpha) * x - (t.sigma_bar * math.expm1(h)) * eps_s


def dpm2_update(ctx: SolverContext, x: torch.Tensor, s: Point, t: Point, r1: float, eps_s: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-2 with intermediate node at λ_s + r₁h."""
    h = t.lam - s.lam
    s1 = point_at_lambda(ctx, s.lam + r1 * h)
    u = (s1.alpha / s.alpha) * x - (s1.sigma_bar * math.expm1(r1 * h)) * eps_s
    eps_s1 = eps_hat(ctx, u, s1)
    phi_1 = math.expm1(h)
    return (t.alpha / s.alpha) * x - (t.sigma_bar * phi_1) * eps_s - (0.5 / r1) * (t.sigma_bar * phi_1) * (eps_s1 - eps_s)


def dpm3_update(
    ctx: SolverContext, x: torch.Tensor, s: Point, t: Point, r1: float, r2: float, eps_s: torch.Tensor,
    eps_s1: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """DPM-Solver-3 (lecture Algorithm 2) with nodes at λ_s + r₁h and λ_s + r₂h.

    ``eps_s1`` may be passed in when the first node was already evaluated (adaptive -23).
    """
    h = t.lam - s.lam
    s1 = point_at_lambda(ctx, s.lam + r1 * h)
    s2 = point_at_lambda(ctx, s.lam + r2 * h)
    if eps_s1 is None:
        u1 = (s1.alpha / s.alpha) * x - (s1.sigma_bar * math.expm1(r1 * h)) * eps_s
        eps_s1 = eps_hat(ctx, u1, s1)
    phi_12 = math.expm1(r2 * h)
    phi_22 = phi_12 / (r2 * h) - 1.0
    u2 = (s2.alpha / s.alpha) * x - (s2.sigma_bar * phi_12) * eps_s - (r2 / r1) * (s2.sigma_bar * phi_22) * (eps_s1 - eps_s)
    eps_s2 = eps_hat(ctx, u2, s2)
    phi_1 = math.expm1(h)
    phi_2 = phi_1 / h - 1.0
    return (t.alpha / s.alpha) * x - (t.sigma_bar * phi_1) * eps_s - (1.0 / r2) * (t.sigma_bar * phi_2) * (eps_s2 - eps_s)


# ---------------------------------------------------------------------- data form
def dpmpp2s_update(ctx: SolverContext, x: torch.Tensor, s: Point, t: Point, r1: float, x0_s: torch.Tensor) -> torch.Tensor:
    """DPM-Solver++(2S) with intermediate node at λ_s + r₁h."""
    h = t.lam - s.lam
    s1 = point_at_lambda(ctx, s.lam + r1 * h)
    u = (s1.sigma_bar / s.sigma_bar) * x - (s1.alpha * math.expm1(-r1 * h)) * x0_s
    x0_s1 = x0_hat(ctx, u, s1)
    phi_1 = math.expm1(-h)
    return (t.sigma_bar / s.sigma_bar) * x - (t.alpha * phi_1) * x0_s - (0.5 / r1) * (t.alpha * phi_1) * (x0_s1 - x0_s)


def dpmpp3s_update(ctx: SolverContext, x: torch.Tensor, s: Point, t: Point, r1: float, r2: float, x0_s: torch.Tensor,
                   node2: str = "official") -> torch.Tensor:
    """DPM-Solver++(3S) with nodes at λ_s + r₁h, λ_s + r₂h (the official "dpmsolver" form).

    ``node2`` picks the second node's state: "official" uses the φ₂ term of the official
    DPM-Solver, (r₂/r₁) α φ₂₂ (m₁ − m₀); "diffusers" the midpoint term −½ (r₂/r₁) α φ₁₂ (m₁ − m₀)
    of diffusers' DPMSolverSinglestepScheduler, whose second sub-step is its 2S midpoint update.
    """
    h = t.lam - s.lam
    s1 = point_at_lambda(ctx, s.lam + r1 * h)
    s2 = point_at_lambda(ctx, s.lam + r2 * h)
    phi_11, phi_12, phi_1 = math.expm1(-r1 * h), math.expm1(-r2 * h), math.expm1(-h)
    u1 = (s1.sigma_bar / s.sigma_bar) * x - (s1.alpha * phi_11) * x0_s
    m1 = x0_hat(ctx, u1, s1)
    if node2 == "diffusers":
        second = -0.5 * (r2 / r1) * (s2.alpha * phi_12)
    else:
        second = (r2 / r1) * (s2.alpha * (phi_12 / (r2 * h) + 1.0))
    u2 = (s2.sigma_bar / s.sigma_bar) * x - (s2.alpha * phi_12) * x0_s + second * (m1 - x0_s)
    m2 = x0_hat(ctx, u2, s2)
    phi_2 = phi_1 / h + 1.0
    return (t.sigma_bar / s.sigma_bar) * x - (t.alpha * phi_1) * x0_s + (1.0 / r2) * (t.alpha * phi_2) * (m2 - x0_s)


# --------------------------------------------------------------------- the loops
def _singlestep(ctx: SolverContext, data_form: bool) -> Iterator[StepEvent]:
    """Steps of per-step order ``ctx.plan.orders`` (1, 2 or 3) along the plan's grid."""
    x = ctx.x0
    orders = ctx.plan.orders or []
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        k = orders[i]
        if t_next == 0:
            x = ctx.final_denoise(x, t_cur)
            yield ctx.event(i + 1, t_next, x, 1)
            continue
        s, t = point(ctx, t_cur), point(ctx, t_next)
        r = interval_nodes(ctx.plan.disc, t_cur, t_next, k, ctx.process)
        if data_form:
            x0_s = x0_hat(ctx, x, s)
            if k == 3:
                x = dpmpp3s_update(ctx, x, s, t, r[0], r[1], x0_s, ctx.option("node2", "official"))
            elif k == 2:
                x = dpmpp2s_update(ctx, x, s, t, r[0], x0_s)
            else:
                x = _ddim_data(x, s, t, x0_s)
        else:
            e = eps_hat(ctx, x, s)
            if k == 1:
                x = dpm1_update(x, s, t, e)
            elif k == 2:
                x = dpm2_update(ctx, x, s, t, r[0], e)
            else:
                x = dpm3_update(ctx, x, s, t, r[0], r[1], e)
        yield ctx.event(i + 1, t_next, x, k)


def _ddim_data(x: torch.Tensor, s: Point, t: Point, x0_s: torch.Tensor) -> torch.Tensor:
    """First-order data-form step (DPM-Solver++1, algebraically DDIM)."""
    return (t.sigma_bar / s.sigma_bar) * x - (t.alpha * math.expm1(s.lam - t.lam)) * x0_s


def dpm_solver(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-Solver-1/2/3 and -fast: singlestep, noise prediction, orders from the plan."""
    return _singlestep(ctx, data_form=False)


def dpm_solver_pp_singlestep(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-Solver++(2S) and (3S): singlestep, data prediction."""
    return _singlestep(ctx, data_form=True)


def ddim(ctx: SolverContext) -> Iterator[StepEvent]:
    """DDIM written in its own form: x_t = α_t x̂₀ + σ̄_t ε̂ with ε̂ recovered from x̂₀.

    Algebraically DPM-Solver-1; computed differently, so the two agree to rounding only.
    With η > 0 (Song et al.'s σ_t(η), in σ terms σ_up = η σ_t √(σ_s² − σ_t²)/σ_s) part of
    the noise is fresh: x_t = α_t (x̂₀ + √(σ_t² − σ_up²) ε̂ + σ_up z); η = 1 is DDPM's
    posterior variance ("fixed_small").
    """
    eta = ctx.option("eta", 0.0)
    x = ctx.x0
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        s = point(ctx, t_cur)
        x0 = ctx.denoise(x, t_cur)
        if t_next == 0:
            x = ctx.s(0.0) * x0
        else:
            t = point(ctx, t_next)
            eps = (x - s.alpha * x0) / s.sigma_bar
            if eta > 0:
                sig, sig_next = ctx.sigma(t_cur), ctx.sigma(t_next)
                up = eta * sig_next * math.sqrt(max(sig * sig - sig_next * sig_next, 0.0)) / sig
                down = math.sqrt(max(sig_next * sig_next - up * up, 0.0))
                x = t.alpha * x0 + (t.alpha * down) * eps + (t.alpha * up) * ctx.randn_like(x)
            else:
                x = t.alpha * x0 + t.sigma_bar * eps
        yield ctx.event(i + 1, t_next, x, 1)
