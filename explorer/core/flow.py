"""Rectified flow / flow matching in the σ(t)/s(t) formalism (issue #12).

Flow models interpolate ``x_t = (1 − t) x₀ + t ε`` for t ∈ [0, 1]: in EDM's terms that is
s(t) = 1 − t and σ(t) = t/(1 − t), and the PF-ODE ``dx/dt = (σ'/σ + s'/s) x − (σ's/σ) D``
becomes ``dx/dt = (x − D)/t`` — the velocity ``v = ε − x₀`` such models predict. Their
timestep shift (SD3, FLUX) ``t' = λt/(1 + (λ − 1)t)`` is exactly σ' = λσ, which is how the
explorer applies it (``RunConfig.shift``, :func:`explorer.core.grids.shifted`).
"""
from __future__ import annotations

from explorer.core.process import Num, Schedule, _t


class FlowSchedule(Schedule):
    """σ(t) = t/(1 − t): the noise level of the straight path (1 − t) x₀ + t ε."""

    name = "rf"

    def sigma(self, t: Num):
        t = _t(t)
        return t / (1 - t)

    def sigma_deriv(self, t: Num):
        t = _t(t)
        return 1 / (1 - t) ** 2

    def sigma_inv(self, sigma: Num):
        sigma = _t(sigma)
        return sigma / (1 + sigma)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowSchedule)

    def __hash__(self) -> int:
        return hash("rf")


