"""Diffusion processes in the σ(t)/s(t) formalism of EDM (SPEC §1).

A :class:`Process` pairs a noise schedule σ(t) with a signal scaling s(t). All
functions take and return float64 tensors (or Python floats): time grids and step
coefficients are always computed in float64, whatever the run's dtype, as EDM does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch

from explorer.core.choices import PROCESSES, SCALINGS, SCHEDULES  # noqa: F401 (re-exported)

Num = Union[float, torch.Tensor]

EPSILON_S = 1e-3  # the VP process's smallest time when sampling (SPEC §1)
VP_BETA_D = 19.9
VP_BETA_MIN = 0.1



def _t(x: Num) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


class Schedule:
    """σ(t), its derivative and inverse."""

    name = "schedule"

    def sigma(self, t: Num) -> torch.Tensor:
        raise NotImplementedError

    def sigma_deriv(self, t: Num) -> torch.Tensor:
        raise NotImplementedError

    def sigma_inv(self, sigma: Num) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class VPSchedule(Schedule):
    """σ(t) = sqrt(exp(½β_d t² + β_min t) − 1)."""

    beta_d: float = VP_BETA_D
    beta_min: float = VP_BETA_MIN
    name = "vp"

    def sigma(self, t: Num) -> torch.Tensor:
        """expm1/log1p below keep small σ (small t) exact in float64, where exp(x) − 1 cancels."""
        t = _t(t)
        return torch.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t).sqrt()

    def sigma_deriv(self, t: Num) -> torch.Tensor:
        t = _t(t)
        s = self.sigma(t)
        return 0.5 * (self.beta_min + self.beta_d * t) * (s + 1 / s)

    def sigma_inv(self, sigma: Num) -> torch.Tensor:
        sigma = _t(sigma)
        return ((self.beta_min**2 + 2 * self.beta_d * torch.log1p(sigma**2)).sqrt() - self.beta_min) / self.beta_d

    @classmethod
    def from_range(cls, sigma_min: float, sigma_max: float, epsilon_s: float = EPSILON_S) -> "VPSchedule":
        """β's such that σ(ε_s) = σ_min and σ(1) = σ_max (SPEC §1)."""
        beta_d = 2 * (math.log1p(sigma_min**2) / epsilon_s - math.log1p(sigma_max**2)) / (epsilon_s - 1)
        beta_min = math.log1p(sigma_max**2) - 0.5 * beta_d
        return cls(beta_d=beta_d, beta_min=beta_min)


class VESchedule(Schedule):
    """σ(t) = sqrt(t)."""

    name = "ve"

    def sigma(self, t: Num) -> torch.Tensor:
        return _t(t).sqrt()

    def sigma_deriv(self, t: Num) -> torch.Tensor:
        return 0.5 / _t(t).sqrt()

    def sigma_inv(self, sigma: Num) -> torch.Tensor:
        return _t(sigma) ** 2

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VESchedule)

    def __hash__(self) -> int:
        return hash("ve")


class LinearSchedule(Schedule):
    """σ(t) = t (EDM)."""

    name = "linear"

    def sigma(self, t: Num) -> torch.Tensor:
        return _t(t).clone()

    def sigma_deriv(self, t: Num) -> torch.Tensor:
        return torch.ones_like(_t(t))

    def sigma_inv(self, sigma: Num) -> torch.Tensor:
        return _t(sigma).clone()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinearSchedule)

    def __hash__(self) -> int:
        return hash("linear")


@dataclass(frozen=True)
class Process:
    """A schedule σ(t) and a scaling s(t) ∈ {vp, none}."""

    schedule: Schedule
    scaling: str = "none"

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"Unknown scaling {self.scaling!r}; choose one of {', '.join(SCALINGS)}.")

    def sigma(self, t: Num) -> torch.Tensor:
        return self.schedule.sigma(t)

    def sigma_deriv(self, t: Num) -> torch.Tensor:
        return self.schedule.sigma_deriv(t)

    def sigma_inv(self, sigma: Num) -> torch.Tensor:
        return self.schedule.sigma_inv(sigma)

    def s(self, t: Num) -> torch.Tensor:
        """Signal scaling: 1/sqrt(1 + σ(t)²) for vp, 1 for none."""
        if self.scaling == "vp":
            return 1 / (1 + self.sigma(t) ** 2).sqrt()
        if self.scaling == "rf":
            return 1 / (1 + self.sigma(t))
        return torch.ones_like(_t(t))

    def s_deriv(self, t: Num) -> torch.Tensor:
        if self.scaling == "vp":
            return -self.sigma(t) * self.sigma_deriv(t) * self.s(t) ** 3
        if self.scaling == "rf":
            return -self.sigma_deriv(t) * self.s(t) ** 2
        return torch.zeros_like(_t(t))

    def t_of_lambda(self, lam: Num) -> torch.Tensor:
        """t_λ(λ) = σ⁻¹(e^{−λ}): the time at which −ln σ equals λ (DPM-Solver's inverse)."""
        return self.sigma_inv(torch.exp(-_t(lam)))

    def describe(self) -> str:
        return f"σ(t)={self.schedule.name}, s(t)={self.scaling}"


def make_schedule(name: str, sigma_min: float, sigma_max: float, epsilon_s: float = EPSILON_S) -> Schedule:
    """Build σ(t) by name; vp's β's come from the run's nominal σ range (SPEC §1)."""
    if name == "vp":
        return VPSchedule.from_range(sigma_min, sigma_max, epsilon_s)
    if name == "ve":
        return VESchedule()
    if name == "linear":
        return LinearSchedule()
    if name == "rf":
        from explorer.core.flow import FlowSchedule

        return FlowSchedule()
    raise ValueError(f"Unknown σ(t) schedule {name!r}; choose one of {', '.join(SCHEDULES)}.")


def resolve_process_names(process: str, sigma_schedule: str | None, scaling: str | None) -> tuple[str, str]:
    """The (schedule, scaling) names of a process, with the advanced overrides applied."""
    if process not in PROCESSES:
        raise ValueError(f"Unknown process {process!r}; choose one of {', '.join(PROCESSES)}.")
    sched, scal = PROCESSES[process]
    sched = sigma_schedule or sched
    scal = scaling or scal
    if sched not in SCHEDULES:
        raise ValueError(f"Unknown σ(t) schedule {sched!r}; choose one of {', '.join(SCHEDULES)}.")
    if scal not in SCALINGS:
        raise ValueError(f"Unknown scaling {scal!r}; choose one of {', '.join(SCALINGS)}.")
    return sched, scal
