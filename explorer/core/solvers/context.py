"""The context a solver runs in: the plan, the denoiser call, noise and step events.

Solvers receive one :class:`SolverContext` and yield :class:`StepEvent` s. Step
coefficients are Python floats computed in float64 from the process, so the tensor
work of a step is a few fused multiply-adds on the state and no device syncs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch

from explorer.core.denoiser import Denoiser
from explorer.core.events import StepEvent
from explorer.core.process import Process


@dataclass
class Plan:
    """What a run will do, decided before the first evaluation.

    Attributes:
        process: σ(t) and s(t) of the run.
        sigma_range: the nominal (σ_min, σ_max) after clamping to the denoiser.
        t: the outer grid t_0 > … (float64 values); ends with 0.0 when the last step goes to σ = 0.
        orders: the order of each step for solvers that vary it (singlestep/multistep), else None.
        final: zero, sigma_min or denoise (denoise adds one step after the grid).
        nfe: the evaluations the run will spend, when known in advance.
        disc: the discretization (singlestep solvers place their nodes by it).
    """

    process: Process
    sigma_range: tuple[float, float]
    t: list[float]
    orders: Optional[list[int]]
    final: str
    nfe: Optional[int]
    disc: str

    @property
    def n_steps(self) -> int:
        """Steps along the grid (the extra denoise step of final=denoise not counted)."""
        return len(self.t) - 1


class SolverContext:
    """Everything a solver needs; it also counts evaluations and builds events."""

    def __init__(
        self,
        denoiser: Denoiser,
        plan: Plan,
        config: "RunConfig",  # noqa: F821 - imported lazily to avoid a cycle
        x0: torch.Tensor,
        randn_like: Callable[[torch.Tensor], torch.Tensor],
        labels: Optional[torch.Tensor] = None,
        record_evals: bool = True,
        total_steps: Optional[int] = None,
    ) -> None:
        self.denoiser = denoiser
        self.plan = plan
        self.config = config
        self.process = plan.process
        self.x0 = x0
        self.randn_like = randn_like
        self.labels = labels
        self.record_evals = record_evals
        self.total_steps = total_steps
        self.nfe = 0
        self._cache: dict[float, tuple[float, float, float, float]] = {}
        self._eval_sigma: list[float] = []
        self._eval_x: list[torch.Tensor] = []
        self._first_denoised: Optional[torch.Tensor] = None

    def option(self, name: str, default: Any = None) -> Any:
        """One of the solver's declared options (``default`` when the run's solver has none
        of that name, as when a solver function is shared by solvers with fewer options)."""
        return self.config.options.get(name, default)

    # ----------------------------------------------------------- process as floats
    def _at(self, t: float) -> tuple[float, float, float, float]:
        """(σ, σ', s, s') at t, computed once per distinct t (grid points recur step after step)."""
        hit = self._cache.get(t)
        if hit is None:
            p = self.process
            hit = (float(p.sigma(t)), float(p.sigma_deriv(t)), float(p.s(t)), float(p.s_deriv(t)))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[t] = hit
        return hit

    def sigma(self, t: float) -> float:
        return self._at(t)[0]

    def sigma_deriv(self, t: float) -> float:
        return self._at(t)[1]

    def s(self, t: float) -> float:
        return self._at(t)[2]

    def s_deriv(self, t: float) -> float:
        return self._at(t)[3]

    def sigma_inv(self, sigma: float) -> float:
        return float(self.process.sigma_inv(sigma))

    def lam(self, t: float) -> float:
        """λ(t) = −ln σ(t) (the half log-SNR of DPM-Solver)."""
        return -math.log(self.sigma(t))

    def t_of_lambda(self, lam: float) -> float:
        return float(self.process.t_of_lambda(lam))

    def round_t(self, sigma: float) -> float:
        """t of the nearest σ the model supports."""
        rounded = float(self.denoiser.round_sigma(torch.tensor(sigma, dtype=torch.float64)))
        return self.sigma_inv(rounded)

    # ------------------------------------------------------------------ evaluation
    def denoise(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """D(x/s(t); σ(t)) for a state x in scaled space; one NFE, recorded."""
        sigma, s = self.sigma(t), self.s(t)
        if not sigma > 0:  # only floating-point underflow can bring a solver here (SPEC §2)
            raise ValueError(f"σ underflowed to 0 at t = {t:g}: the σ range is too wide for floating point; narrow it.")
        x_in = x / s
        sig = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        out = self.denoiser(x_in, sig, self.labels)
        self.nfe += 1
        self._eval_sigma.append(sigma)
        if self.record_evals:
            self._eval_x.append(x_in)
        if self._first_denoised is None:
            self._first_denoised = out
        return out

    def ode_derivative(self, x: torch.Tensor, t: float, denoised: torch.Tensor) -> torch.Tensor:
        """dx/dt of the probability-flow ODE (EDM eq. 4) given D at (x, t)."""
        sig, dsig, s, ds = self._at(t)
        return torch.mul(x, dsig / sig + ds / s).sub_(denoised, alpha=dsig * s / sig)

    # ---------------------------------------------------------------------- events
    def event(self, index: int, t: float, x: torch.Tensor, order: Optional[int] = None) -> StepEvent:
        """The event for the state x reached at time t; collects this step's evaluations."""
        ev = StepEvent(
            index=index,
            t=t,
            sigma=self.sigma(t) if t > 0 else 0.0,
            scale=self.s(t),
            x=x,
            denoised=self._first_denoised,
            nfe=self.nfe,
            total_steps=self.total_steps,
            eval_sigma=self._eval_sigma,
            eval_x=self._eval_x,
            order=order,
        )
        self._eval_sigma, self._eval_x, self._first_denoised = [], [], None
        return ev

    def final_denoise(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """The first-order step to σ = 0: x = s(0) D(x/s(t); σ(t)) (SPEC §2)."""
        return self.s(0.0) * self.denoise(x, t)


def steps_of(t: Sequence[float]) -> list[tuple[int, float, float]]:
    """(i, t_i, t_{i+1}) for each step of a grid."""
    return [(i, t[i], t[i + 1]) for i in range(len(t) - 1)]
