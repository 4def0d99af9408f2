"""The ground-truth solver: adaptive Dormand–Prince (RK45) in float64 via SciPy.

It integrates the probability-flow ODE through every point of the plan's grid (so its
states line up with other solvers' states at equal σ) and, for a final step to σ = 0,
ends with x = s(0) D(x/s; σ_min) like every other solver. The tolerance is
``rtol`` (default 1e-8) and ``atol`` (default rtol · 1e-2).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from scipy.integrate import solve_ivp

from explorer.core.events import StepEvent
from explorer.core.solvers.context import SolverContext, steps_of
from explorer.core.solvers.options import REFERENCE_RTOL

METHOD = "RK45"


def reference(ctx: SolverContext) -> Iterator[StepEvent]:
    rtol = ctx.option("rtol", REFERENCE_RTOL)
    atol = ctx.option("atol")
    atol = rtol * 1e-2 if atol is None else atol
    x = ctx.x0
    shape, device, dtype = x.shape, x.device, x.dtype

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y).to(device=device, dtype=dtype).reshape(shape)
        d = ctx.ode_derivative(state, t, ctx.denoise(state, t))
        return d.reshape(-1).detach().cpu().numpy().astype(np.float64)

    for i, t_cur, t_next in steps_of(ctx.plan.t):
        if t_next == 0:
            x = ctx.final_denoise(x, t_cur)
        else:
            y0 = x.reshape(-1).detach().cpu().numpy().astype(np.float64)
            sol = solve_ivp(rhs, (t_cur, t_next), y0, method=METHOD, rtol=rtol, atol=atol)
            if not sol.success:
                raise ValueError(f"The reference solver failed between t={t_cur:g} and t={t_next:g}: {sol.message}")
            x = torch.from_numpy(sol.y[:, -1].copy()).to(device=device, dtype=dtype).reshape(shape)
        yield ctx.event(i + 1, t_next, x, None)
