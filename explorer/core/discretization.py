"""Time-step discretizations (SPEC §2) and the default σ ranges they imply.

Every function here works in float64. A discretization produces ``n`` grid times
``t_0 > … > t_{n−1}`` of the chosen σ(t); the caller appends t = 0 when the run's
final step goes to σ = 0.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import torch

from explorer.core.choices import DISCRETIZATIONS, FINALS  # noqa: F401 (re-exported)
from explorer.core.process import EPSILON_S, Process, VPSchedule


IDDPM_M = 1000
IDDPM_C1 = 0.001
IDDPM_C2 = 0.008

_VP_DEFAULT = VPSchedule()
DEFAULT_SIGMA_RANGE: dict[str, tuple[float, float]] = {
    "vp": (float(_VP_DEFAULT.sigma(EPSILON_S)), float(_VP_DEFAULT.sigma(1.0))),
    "ve": (0.02, 100.0),
    "iddpm": (0.002, 81.0),
    "edm": (0.002, 80.0),
}
# logsnr / time-uniform / time-quadratic take the range of the chosen σ(t) schedule.
_SCHEDULE_RANGE_KEY = {"vp": "vp", "ve": "ve", "linear": "edm", "rf": "edm"}

RoundSigma = Optional[Callable[[torch.Tensor], torch.Tensor]]


def default_sigma_range(disc: str, schedule_name: str, epsilon_s: float = EPSILON_S) -> tuple[float, float]:
    """The σ range a discretization uses when the user sets none (SPEC §1 table).

    The vp row is σ_vp(ε_s) … σ_vp(1) of the standard β's, so it follows ε_s as EDM's does.
    """
    if disc not in DISCRETIZATIONS:
        raise ValueError(f"Unknown discretization {disc!r}; choose one of {', '.join(DISCRETIZATIONS)}.")
    key = disc if disc in DEFAULT_SIGMA_RANGE else _SCHEDULE_RANGE_KEY[schedule_name]
    if key == "vp" and epsilon_s != EPSILON_S:
        return float(_VP_DEFAULT.sigma(epsilon_s)), float(_VP_DEFAULT.sigma(1.0))
    return DEFAULT_SIGMA_RANGE[key]


def nominal_sigma_range(
    disc: str,
    schedule_name: str,
    sigma_min: Optional[float],
    sigma_max: Optional[float],
    model_range: tuple[float, float] = (0.0, math.inf),
    epsilon_s: float = EPSILON_S,
) -> tuple[float, float]:
    """The run's σ range: the user's or the default, clamped to the denoiser's own range."""
    lo, hi = default_sigma_range(disc, schedule_name, epsilon_s)
    lo = lo if sigma_min is None else float(sigma_min)
    hi = hi if sigma_max is None else float(sigma_max)
    if not (lo > 0 and math.isfinite(lo)) or not (hi > 0 and math.isfinite(hi)):
        raise ValueError(f"σ_min and σ_max must be positive and finite (got {lo:g} and {hi:g}).")
    lo, hi = max(lo, float(model_range[0])), min(hi, float(model_range[1]))
    if not lo < hi:
        raise ValueError(
            f"σ_min must be smaller than σ_max after clamping to the denoiser's range "
            f"[{model_range[0]:g}, {model_range[1]:g}] (got σ_min={lo:g}, σ_max={hi:g})."
        )
    return lo, hi


@functools.lru_cache(maxsize=8)
def _iddpm_levels(M: int, C1: float, C2: float) -> tuple[float, ...]:
    """The recursion in Python floats: IEEE float64 with the C library's sin, so the same
    bits on every CPU (a vectorized torch sin may differ in the last place between CPUs)."""
    alpha_bar = [math.sin(0.5 * math.pi * j / M / (C2 + 1)) ** 2 for j in range(M + 1)]
    u = [0.0] * (M + 1)
    for j in range(M, 0, -1):
        ratio = max(alpha_bar[j - 1] / alpha_bar[j], C1)
        u[j - 1] = math.sqrt((u[j] ** 2 + 1) / ratio - 1)
    return tuple(u)


def iddpm_sigmas(M: int = IDDPM_M, C1: float = IDDPM_C1, C2: float = IDDPM_C2) -> torch.Tensor:
    """The iDDPM noise levels u_0 > … > u_M = 0 (SPEC §2), float64.

    ᾱ(j) and the recursion are both float64: near j = M the ratio ᾱ(j−1)/ᾱ(j) is
    1 − O(1e-5), so a float32 ᾱ (what EDM's code computes from an integer j) moves
    entries by up to 5e-4 relative, differently on different CPUs. This is the table
    EDM's ``ablation_sampler`` gives when its ᾱ is evaluated in float64.
    """
    if isinstance(M, bool) or not isinstance(M, int) or not 1 <= M <= 1_000_000:
        raise ValueError(f"The iDDPM step count M must be an integer from 1 to 1000000 (got {M!r}).")
    if not (0 < C1 <= 1 and 0 <= C2 < 1e6):
        raise ValueError(f"The iDDPM constants need 0 < C_1 ≤ 1 and 0 ≤ C_2 (got C_1={C1!r}, C_2={C2!r}).")
    return torch.tensor(_iddpm_levels(M, float(C1), float(C2)), dtype=torch.float64)


def _fraction(n: int) -> torch.Tensor:
    """i/(n−1) for i = 0 … n−1 (0 alone when n = 1)."""
    idx = torch.arange(n, dtype=torch.float64)
    return idx / (n - 1) if n > 1 else idx


def sigma_grid(disc: str, n: int, sigma_min: float, sigma_max: float, rho: float, epsilon_s: float = EPSILON_S) -> torch.Tensor:
    """σ_0 … σ_{n−1} of the σ-defined discretizations (vp, ve, iddpm, edm, logsnr)."""
    f = _fraction(n)
    if disc == "vp":
        vp = VPSchedule.from_range(sigma_min, sigma_max, epsilon_s)
        return vp.sigma(1 + f * (epsilon_s - 1))
    if disc == "ve":
        return ((sigma_max**2) * ((sigma_min**2 / sigma_max**2) ** f)).sqrt()
    if disc == "iddpm":
        u = iddpm_sigmas()
        kept = u[(u >= sigma_min) & (u <= sigma_max)]
        if len(kept) == 0:
            raise ValueError(f"No iDDPM noise level lies in [{sigma_min:g}, {sigma_max:g}].")
        idx = torch.arange(n, dtype=torch.float64)
        scale = (len(kept) - 1) / (n - 1) if n > 1 else 0.0
        return kept[(scale * idx).round().to(torch.int64)]
    if disc == "edm":
        if rho <= 0:
            raise ValueError(f"ρ must be positive (got {rho:g}).")
        a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
        return (a + f * (b - a)) ** rho
    if disc == "logsnr":
        lam_max, lam_min = -math.log(sigma_max), -math.log(sigma_min)
        return torch.exp(-(lam_max + f * (lam_min - lam_max)))
    raise ValueError(f"{disc!r} is not a σ-defined discretization.")


def time_grid(
    disc: str,
    n: int,
    process: Process,
    sigma_min: float,
    sigma_max: float,
    rho: float = 7.0,
    round_sigma: RoundSigma = None,
    epsilon_s: float = EPSILON_S,
) -> torch.Tensor:
    """Grid times t_0 … t_{n−1} (float64) of the chosen σ(t), from σ_max down to σ_min.

    σ-defined discretizations map through σ⁻¹ after rounding σ to what the model
    supports (EDM's ``round_sigma``); time-uniform and time-quadratic are uniform in the
    schedule's own t (resp. in sqrt(t)), as DPM-Solver's skip types.
    """
    if disc not in DISCRETIZATIONS:
        raise ValueError(f"Unknown discretization {disc!r}; choose one of {', '.join(DISCRETIZATIONS)}.")
    if n < 1:
        raise ValueError("A time grid needs at least one point.")
    rnd = round_sigma or (lambda s: s)
    if disc in ("time-uniform", "time-quadratic"):
        t_max = float(process.sigma_inv(sigma_max))
        t_min = float(process.sigma_inv(sigma_min))
        f = _fraction(n)
        if disc == "time-uniform":
            t = t_max + f * (t_min - t_max)
        else:
            t = (t_max**0.5 + f * (t_min**0.5 - t_max**0.5)) ** 2
        if round_sigma is not None:
            t = process.sigma_inv(rnd(process.sigma(t)))
        return t
    sig = sigma_grid(disc, n, sigma_min, sigma_max, rho, epsilon_s)
    return process.sigma_inv(rnd(sig).to(torch.float64))


def interval_nodes(
    disc: str, t_start: float, t_end: float, k: int, process: Process
) -> list[float]:
    """The k − 1 interior nodes of an order-k singlestep step from t_start to t_end, as
    fractions r_j of the step's λ-length (SPEC §4 "Where the intermediate nodes sit")."""
    if k == 1:
        return []
    if disc not in ("time-uniform", "time-quadratic"):
        return [j / k for j in range(1, k)]
    f = _fraction(k + 1)[1:-1]
    if disc == "time-uniform":
        ts = t_start + f * (t_end - t_start)
    else:
        ts = (t_start**0.5 + f * (t_end**0.5 - t_start**0.5)) ** 2
    lam = lambda t: -torch.log(process.sigma(t))  # noqa: E731
    l0, l1 = float(lam(t_start)), float(lam(t_end))
    return [float((lam(ti) - l0) / (l1 - l0)) for ti in ts]
