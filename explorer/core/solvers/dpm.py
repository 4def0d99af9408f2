"""DDIM and the singlestep DPM-Solvers (Lu et al. 2022) in EDM's σ(t)/s(t) terms.

With α_t = s(t), σ̄_t = s(t)σ(t) and λ_t = −ln σ(t), the noise prediction is
ε̂(x, t) = (x − α_t D(x/α_t; σ(t)))/σ̄_t and the data prediction x̂₀ = D(x/α_t; σ(t)).
The update formulas are those of the official DPM-Solver: its ``dpmsolver`` type
(``solver_type`` midpoint, the default) and its ``taylor`` type (heun, as diffusers names
it). The inner nodes sit at fixed λ fractions of each step, or, with ``nodes="grid"``, at
the grid's own points as diffusers' DPMSolverSinglestepScheduler takes them.
The step to σ = 0 is first order: x = s(0) D (SPEC §2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

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


def model_output(ctx: SolverContext, x: torch.Tensor, p: Point, data_form: bool) -> torch.Tensor:
    """The prediction a form integrates: x̂₀ (data form, DPM-Solver++) or ε̂ (noise form)."""
    return x0_hat(ctx, x, p) if data_form else eps_hat(ctx, x, p)


# ------------------------------------------------------------------ the updates
def singlestep_update(
    x: torch.Tensor, s: Point, t: Point, nodes: Sequence[Point], ms: Sequence[torch.Tensor], data_form: bool,
    heun: bool = False,
) -> torch.Tensor:
    """x_t from x_s and the model outputs ``ms`` at s and at the inner ``nodes`` (order len(ms)).

    Both forms are x_t = c₀ x_s − c (φ₁ m₀ + φ₂ D₁ + φ₃ D₂) with φ₁ = e^g − 1, φ₂ = φ₁/g − 1,
    φ₃ = φ₂/g − ½, where g = h, c₀ = α_t/α_s, c = σ̄_t in the noise form and g = −h,
    c₀ = σ̄_t/σ̄_s, c = α_t in the data form (h = λ_t − λ_s, node j at λ_s + r_j h). Order 2:
    midpoint replaces φ₂ D₁ by φ₁ (m₁ − m₀)/(2r₁), heun takes D₁ = (m₁ − m₀)/r₁. Order 3:
    midpoint (the official "dpmsolver" type) uses the last node only, D₁ = (m₂ − m₀)/r₂;
    heun (the official "taylor" type) fits D₁ and D₂ through both nodes.
    """
    h = t.lam - s.lam
    if data_form:
        g, lin, coef = -h, t.sigma_bar / s.sigma_bar, t.alpha
    else:
        g, lin, coef = h, t.alpha / s.alpha, t.sigma_bar
    phi_1 = math.expm1(g)
    phi_2 = phi_1 / g - 1.0
    m0 = ms[0]
    if len(ms) == 1:
        return lin * x - (coef * phi_1) * m0
    r = [(p.lam - s.lam) / h for p in nodes]
    if len(ms) == 2:
        d1 = (1.0 / r[0]) * (ms[1] - m0)
        return lin * x - (coef * phi_1) * m0 - (coef * (phi_2 if heun else 0.5 * phi_1)) * d1
    d1_a, d1_b = (1.0 / r[0]) * (ms[1] - m0), (1.0 / r[1]) * (ms[2] - m0)
    if not heun:
        return lin * x - (coef * phi_1) * m0 - (coef * phi_2) * d1_b
    d1 = (r[1] * d1_a - r[0] * d1_b) / (r[1] - r[0])
    d2 = (2.0 / (r[1] - r[0])) * (d1_b - d1_a)
    phi_3 = phi_2 / g - 0.5
    return lin * x - (coef * phi_1) * m0 - (coef * phi_2) * d1 - (coef * phi_3) * d2


def node_state(
    x: torch.Tensor, s: Point, node: int, nodes: Sequence[Point], ms: Sequence[torch.Tensor], data_form: bool,
    node2: str,
) -> torch.Tensor:
    """The state at inner node ``node`` (0 or 1) of a step from s: the order-1 update to the
    first node, the order-2 one to the second. ``node2``="official" takes the φ₂ (heun) term
    there, as the official DPM-Solver-3 does; "diffusers" the midpoint term."""
    return singlestep_update(x, s, nodes[node], nodes[:node], ms[:node + 1], data_form, heun=node2 == "official")


def inner_outputs(
    ctx: SolverContext, x: torch.Tensor, s: Point, nodes: Sequence[Point], ms: list[torch.Tensor], data_form: bool,
    node2: str = "official",
) -> list[torch.Tensor]:
    """``ms`` (the outputs at s and possibly at the first nodes) extended by one evaluation at
    each remaining inner node."""
    ms = list(ms)
    for j in range(len(ms) - 1, len(nodes)):
        ms.append(model_output(ctx, node_state(x, s, j, nodes, ms, data_form, node2), nodes[j], data_form))
    return ms


# --------------------------------------------------------------------- the loops
def _singlestep(ctx: SolverContext, data_form: bool) -> Iterator[StepEvent]:
    """Steps of per-step order ``ctx.plan.orders`` (1, 2 or 3) along the plan's grid."""
    if ctx.option("nodes", "interval") == "grid":
        yield from _on_grid(ctx, data_form)
        return
    x = ctx.x0
    orders = ctx.plan.orders or []
    heun, node2 = ctx.option("solver_type", "midpoint") == "heun", ctx.option("node2", "official")
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        k = orders[i]
        if t_next == 0:
            x = ctx.final_denoise(x, t_cur)
            yield ctx.event(i + 1, t_next, x, 1)
            continue
        s, t = point(ctx, t_cur), point(ctx, t_next)
        r = interval_nodes(ctx.plan.disc, t_cur, t_next, k, ctx.process)
        nodes = [point_at_lambda(ctx, s.lam + rj * (t.lam - s.lam)) for rj in r]
        ms = inner_outputs(ctx, x, s, nodes, [model_output(ctx, x, s, data_form)], data_form, node2)
        x = singlestep_update(x, s, t, nodes, ms, data_form, heun)
        yield ctx.event(i + 1, t_next, x, k)


def _on_grid(ctx: SolverContext, data_form: bool) -> Iterator[StepEvent]:
    """Singlestep blocks whose inner nodes are the grid's own points (``nodes="grid"``).

    A step of order 1 starts a block; a step of order k evaluates the model at its own start
    (the block's (k−1)-th inner node) and goes from the block's first state to the next grid
    point with the k outputs of the block. So each step costs one evaluation and each state
    is the one diffusers' DPMSolverSinglestepScheduler reaches there. The state at a block's
    second node (an order-2 step followed by an order-3 one) follows ``node2``, the end of a
    block ``solver_type``.
    """
    x = ctx.x0
    orders = ctx.plan.orders or []
    _check_blocks(orders)
    heun, node2 = ctx.option("solver_type", "midpoint") == "heun", ctx.option("node2", "official")
    x_b, s_b, nodes, ms = x, point(ctx, ctx.plan.t[0]), [], []
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        k = orders[i]
        if t_next == 0:
            x = ctx.final_denoise(x, t_cur)
            yield ctx.event(i + 1, t_next, x, 1)
            continue
        p = point(ctx, t_cur)
        if k == 1:
            x_b, s_b, nodes, ms = x, p, [], []
        else:
            nodes.append(p)
        ms.append(model_output(ctx, x, p, data_form))
        second_node = k == 2 and i + 1 < len(orders) and orders[i + 1] == 3
        step_heun = node2 == "official" if second_node else heun
        x = singlestep_update(x_b, s_b, point(ctx, t_next), nodes, ms, data_form, step_heun)
        yield ctx.event(i + 1, t_next, x, k)


def _check_blocks(orders: Sequence[int]) -> None:
    """With nodes=grid a block starts with an order-1 step and each further step is one order higher."""
    for i, k in enumerate(orders):
        if k != 1 and (i == 0 or k != orders[i - 1] + 1):
            raise ValueError(f"Step {i + 1} has order {k}: with nodes=grid the steps of a block have orders "
                             f"1, 2, 3 in turn (got {list(orders)}).")


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

    Option ``clip_x0`` = r is diffusers' ``clip_sample``: x̂₀ is clamped to ±r after ε̂ was
    taken from the unclipped x̂₀, so the two no longer describe one state (not an ODE step).
    """
    eta = ctx.option("eta", 0.0)
    clip = ctx.option("clip_x0", None)
    x = ctx.x0
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        s = point(ctx, t_cur)
        x0 = ctx.denoise(x, t_cur)
        eps = (x - s.alpha * x0) / s.sigma_bar
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        if t_next == 0:
            x = ctx.s(0.0) * x0
        else:
            t = point(ctx, t_next)
            if eta > 0:
                sig, sig_next = ctx.sigma(t_cur), ctx.sigma(t_next)
                up = eta * sig_next * math.sqrt(max(sig * sig - sig_next * sig_next, 0.0)) / sig
                down = math.sqrt(max(sig_next * sig_next - up * up, 0.0))
                x = t.alpha * x0 + (t.alpha * down) * eps + (t.alpha * up) * ctx.randn_like(x)
            else:
                x = t.alpha * x0 + t.sigma_bar * eps
        yield ctx.event(i + 1, t_next, x, 1)
