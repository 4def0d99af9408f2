"""Multistep DPM-Solvers (2M, 3M in noise and data form), their third-order "taylor"
corrections, and DPM-Solver++(2M) SDE.

Formulas of SPEC §4, which are those of the official DPM-Solver, diffusers and
k-diffusion. The library 3M uses D2 ≈ h²m''/2 where exact integration of the quadratic
needs h²m'' in front of φ₃, so it is formally second order; the ``-taylor`` variants
use 2·D2 and are third order. One evaluation per step, at the step's start.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of
from explorer.core.solvers.dpm import Point
from explorer.core.solvers.unipc import corrected_multistep



def _step(
    x: torch.Tensor, k: int, pts: list[Point], ms: list[torch.Tensor], t: Point, data_form: bool, d2_factor: float,
    heun: bool = False,
) -> torch.Tensor:
    """One multistep update of order k from the last point of ``pts`` to t (``heun``: the
    second-order term with φ₂ instead of φ₁/2, diffusers' ``solver_type="heun"``)."""
    p0, m0 = pts[-1], ms[-1]
    h = t.lam - p0.lam
    if data_form:
        lin, coef, phi_1 = (t.sigma_bar / p0.sigma_bar), t.alpha, math.expm1(-h)
    else:
        lin, coef, phi_1 = (t.alpha / p0.alpha), t.sigma_bar, math.expm1(h)
    if k == 1:
        return lin * x - (coef * phi_1) * m0
    r0 = (p0.lam - pts[-2].lam) / h
    d1_0 = (1.0 / r0) * (m0 - ms[-2])
    if k == 2 and heun:
        if data_form:
            return lin * x - (coef * phi_1) * m0 + (coef * (phi_1 / h + 1.0)) * d1_0
        return lin * x - (coef * phi_1) * m0 - (coef * (phi_1 / h - 1.0)) * d1_0
    if k == 2:
        return lin * x - (coef * phi_1) * m0 - 0.5 * (coef * phi_1) * d1_0
    r1 = (pts[-2].lam - pts[-3].lam) / h
    d1_1 = (1.0 / r1) * (ms[-2] - ms[-3])
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = d2_factor * (1.0 / (r0 + r1)) * (d1_0 - d1_1)
    if data_form:
        phi_2 = phi_1 / h + 1.0
        phi_3 = phi_2 / h - 0.5
        return lin * x - (coef * phi_1) * m0 + (coef * phi_2) * d1 - (coef * phi_3) * d2
    phi_2 = phi_1 / h - 1.0
    phi_3 = phi_2 / h - 0.5
    return lin * x - (coef * phi_1) * m0 - (coef * phi_2) * d1 - (coef * phi_3) * d2


def _multistep(ctx: SolverContext, data_form: bool, d2_factor: float = 1.0) -> Iterator[StepEvent]:
    """The multistep loop (:func:`corrected_multistep`); with the ``corrector`` option, UniC
    (bh2) corrects each state with the evaluation the next step makes there."""
    heun = ctx.option("solver_type", "midpoint") == "heun"

    def predict(x, pts, ms, t, k):
        return _step(x, k, list(pts), list(ms), t, data_form, d2_factor, heun)

    return corrected_multistep(ctx, data_form, predict, "bh2" if ctx.option("corrector", False) else None)


def dpm_solver_multistep(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-Solver-2M/-3M (noise prediction)."""
    return _multistep(ctx, data_form=False)


def dpm_solver_pp_multistep(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-Solver++(2M)/(3M) (data prediction)."""
    return _multistep(ctx, data_form=True)


def dpm_solver_multistep_taylor(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-Solver-3M with 2·D2: the third-order Taylor form (noise prediction)."""
    return _multistep(ctx, data_form=False, d2_factor=2.0)


def dpm_solver_pp_multistep_taylor(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-Solver++(3M) with 2·D2: the third-order Taylor form (data prediction)."""
    return _multistep(ctx, data_form=True, d2_factor=2.0)


def dpm_solver_pp_2m_sde(ctx: SolverContext) -> Iterator[StepEvent]:
    """DPM-Solver++(2M) SDE (midpoint form, as k-diffusion's), in unscaled space y = x/s.

    With η = 0 it is exactly DPM-Solver++(2M); noise comes from the per-sample streams.
    """
    eta, s_noise = ctx.option("eta"), ctx.option("s_noise")
    orders = ctx.plan.orders or []
    x = ctx.x0
    old_d, h_last = None, None
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        s_cur = ctx.s(t_cur)
        d = ctx.denoise(x, t_cur)
        if t_next == 0:
            x = ctx.s(0.0) * d
            yield ctx.event(i + 1, t_next, x, 1)
            continue
        sig_cur, sig_next = ctx.sigma(t_cur), ctx.sigma(t_next)
        h = math.log(sig_cur) - math.log(sig_next)
        eta_h = eta * h
        y = x / s_cur
        y = (sig_next / sig_cur * math.exp(-eta_h)) * y + (-math.expm1(-h - eta_h)) * d
        k = 1
        if old_d is not None and orders[i] >= 2:
            r = h_last / h
            y = y + (0.5 * -math.expm1(-h - eta_h) / r) * (d - old_d)
            k = 2
        if eta > 0:
            y = y + (sig_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise) * ctx.randn_like(y)
        x = ctx.s(t_next) * y
        old_d, h_last = d, h
        yield ctx.event(i + 1, t_next, x, k)
