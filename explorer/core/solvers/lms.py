"""Linear multistep (order 4) on dx/dt = d(x, t) in the process's own t.

Step i uses order min(i+1, 4) with coefficients c_ij = ∫_{t_i}^{t_{i+1}} ℓ_j(τ) dτ over
the Lagrange basis on t_i … t_{i−k+1}. The integrals of these polynomials are exact
(Gauss–Legendre with 4 nodes integrates degree ≤ 7 exactly). For the EDM process (t = σ)
this is k-diffusion's ``sample_lms``; the step to t = 0 keeps its order (SPEC §2).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of

MAX_ORDER = 4
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(4)


def lms_coefficients(ts: Sequence[float], t_next: float) -> list[float]:
    """∫ from ts[0] to t_next of each Lagrange basis polynomial on the nodes ``ts``.

    ``ts[0]`` is the current time, ``ts[j]`` the time of the j-th previous derivative.
    """
    a, b = ts[0], t_next
    tau = 0.5 * (b - a) * _NODES + 0.5 * (a + b)
    coeffs = []
    for j, tj in enumerate(ts):
        basis = np.ones_like(tau)
        for m, tm in enumerate(ts):
            if m != j:
                basis *= (tau - tm) / (tj - tm)
        coeffs.append(float(0.5 * (b - a) * np.dot(_WEIGHTS, basis)))
    return coeffs


def lms(ctx: SolverContext) -> Iterator[StepEvent]:
    x = ctx.x0
    ds: list[torch.Tensor] = []
    t = ctx.plan.t
    for i, t_cur, t_next in steps_of(t):
        ds = ([ctx.ode_derivative(x, t_cur, ctx.denoise(x, t_cur))] + ds)[:MAX_ORDER]
        k = min(i + 1, MAX_ORDER)
        coeffs = lms_coefficients([t[i - j] for j in range(k)], t_next)
        x = x + sum(c * d for c, d in zip(coeffs, ds))
        yield ctx.event(i + 1, t_next, x, k)
