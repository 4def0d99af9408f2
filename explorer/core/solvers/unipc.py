"""UniPC (Zhao et al. 2023): the predictor UniP-p and the corrector UniC-p, in λ = −ln σ.

Both integrate the exponential-integrator form of the ODE with the model output m
(data prediction x̂₀, or noise prediction ε̂) replaced by a polynomial through the last
p outputs. With ``B(h)`` = h (``bh1``) or e^h − 1 (``bh2``), the coefficients ρ solve
R ρ = b, R_ik = r_k^{i−1}, b_i = i!·h·φ_{i+1}(h)/B(h) (paper eq. 9). UniC-p corrects
the predictor's x_t with the model output at x_t itself, which the next step evaluates
anyway: one more order of accuracy at no extra evaluation. The model output kept for
later steps is the one at the uncorrected x_t, as in the paper's and diffusers' code.

Formulas as the official UniPC and diffusers' ``UniPCMultistepScheduler`` write them;
the state is x in the process's scaled space (α = s, σ̄ = sσ), so they hold for any
s(t). ``unic_correct`` is also the ``corrector`` option of the DPM-Solver multistep
solvers.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of
from explorer.core.solvers.dpm import Point, point



def _coefficients(h: float, rks: Sequence[float], variant: str, data_form: bool) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(h·φ₁ term, B(h), R, b) of UniPC for signed step hh = −h (data) or h (noise)."""
    hh = -h if data_form else h
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else math.expm1(hh)
    order = len(rks)
    R = np.array([[r ** (i - 1) for r in rks] for i in range(1, order + 1)], dtype=np.float64)
    b = np.empty(order, dtype=np.float64)
    h_phi_k, factorial = h_phi_1 / hh - 1.0, 1.0
    for i in range(1, order + 1):
        b[i - 1] = h_phi_k * factorial / b_h
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    return h_phi_1, b_h, R, b


def _base(x: torch.Tensor, s0: Point, t: Point, m0: torch.Tensor, h_phi_1: float, data_form: bool) -> torch.Tensor:
    """The first-order (DDIM) part shared by UniP and UniC."""
    if data_form:
        return (t.sigma_bar / s0.sigma_bar) * x - (t.alpha * h_phi_1) * m0
    return (t.alpha / s0.alpha) * x - (t.sigma_bar * h_phi_1) * m0


def _scale(t: Point, data_form: bool) -> float:
    return t.alpha if data_form else t.sigma_bar


def unip_step(x: torch.Tensor, pts: Sequence[Point], ms: Sequence[torch.Tensor], t: Point, order: int,
              variant: str, data_form: bool) -> torch.Tensor:
    """UniP-``order`` from the last point of ``pts`` (its model output the last of ``ms``) to t."""
    s0, m0 = pts[-1], ms[-1]
    h = t.lam - s0.lam
    rks = [(pts[-(i + 1)].lam - s0.lam) / h for i in range(1, order)] + [1.0]
    d1s = [(ms[-(i + 1)] - m0) / rk for i, rk in zip(range(1, order), rks)]
    h_phi_1, b_h, R, b = _coefficients(h, rks, variant, data_form)
    x_t = _base(x, s0, t, m0, h_phi_1, data_form)
    if order == 1:
        return x_t
    rhos = [0.5] if order == 2 else np.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
    res = sum(float(rho) * d for rho, d in zip(rhos, d1s))
    return x_t - (_scale(t, data_form) * b_h) * res


def unic_correct(x_prev: torch.Tensor, pts: Sequence[Point], ms: Sequence[torch.Tensor], t: Point, m_t: torch.Tensor,
                 order: int, variant: str, data_form: bool) -> torch.Tensor:
    """UniC-``order``: x_t from x_prev at ``pts[-1]`` using the outputs ``ms`` and the new output m_t at t."""
    s0, m0 = pts[-1], ms[-1]
    h = t.lam - s0.lam
    rks = [(pts[-(i + 1)].lam - s0.lam) / h for i in range(1, order)] + [1.0]
    d1s = [(ms[-(i + 1)] - m0) / rk for i, rk in zip(range(1, order), rks)]
    h_phi_1, b_h, R, b = _coefficients(h, rks, variant, data_form)
    rhos = [0.5] if order == 1 else np.linalg.solve(R, b).tolist()
    x_t = _base(x_prev, s0, t, m0, h_phi_1, data_form)
    res = sum(float(rho) * d for rho, d in zip(rhos[:-1], d1s))
    return x_t - (_scale(t, data_form) * b_h) * (res + float(rhos[-1]) * (m_t - m0))


def model_output(ctx: SolverContext, x: torch.Tensor, p: Point, data_form: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, D): the model output in the solver's form, and D itself (one evaluation)."""
    d = ctx.denoise(x, p.t)
    return (d if data_form else (x - p.alpha * d) / p.sigma_bar), d


Predictor = Callable[[torch.Tensor, Sequence[Point], Sequence[torch.Tensor], Point, int], torch.Tensor]


def corrected_multistep(ctx: SolverContext, data_form: bool, predict: Predictor, corrector: Optional[str]) -> Iterator[StepEvent]:
    """The multistep loop shared by UniPC and the DPM-Solver multistep solvers: one evaluation
    per step, ``predict(x, points, outputs, t_next, order)`` to the next point and, when
    ``corrector`` names a B(h) variant, UniC on each new state with the evaluation the next
    step makes there (no extra NFE). A step's event shows the predictor's state: its
    correction needs the following evaluation."""
    orders = ctx.plan.orders or []
    x = ctx.x0
    pts: list[Point] = []
    ms: list[torch.Tensor] = []
    last_x, last_order = None, 0
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        p = point(ctx, t_cur)
        m, d = model_output(ctx, x, p, data_form)
        if corrector and last_x is not None:
            x = unic_correct(last_x, pts, ms, p, m, last_order, corrector, data_form)
        pts, ms = (pts + [p])[-3:], (ms + [m])[-3:]
        if t_next == 0:
            x, k = ctx.s(0.0) * d, 1
        else:
            k = min(orders[i], len(pts))
            last_x, last_order = x, k
            x = predict(x, pts, ms, point(ctx, t_next), k)
        yield ctx.event(i + 1, t_next, x, k)


def unipc(ctx: SolverContext) -> Iterator[StepEvent]:
    """UniPC-p: UniP-p steps, each corrected by UniC once the next evaluation is made."""
    variant, data_form = ctx.option("variant"), ctx.option("prediction") == "data"

    def predict(x, pts, ms, t, k):
        return unip_step(x, pts, ms, t, k, variant, data_form)

    return corrected_multistep(ctx, data_form, predict, variant if ctx.option("corrector") else None)
