"""diffusers' timestep spacings and σ grids, with diffusers' own float32/float64 steps.

A diffusers scheduler keeps its β/ᾱ tables in float32 and builds each grid through a
fixed sequence of numpy operations; reproducing a loop to 1e-10 means producing the very
same float32 σ's, so every function here names the precision each stage has there
(diffusers 0.2x–0.4x, ``scheduling_*_discrete.py`` and ``scheduling_dpmsolver_*.py``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

SPACINGS = ("linspace", "leading", "trailing")


def sigma_table(alphas_cumprod32: torch.Tensor) -> np.ndarray:
    """σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) for t = 0 … T−1, computed in float32 as diffusers does."""
    ac = alphas_cumprod32.to(torch.float32)
    return (((1 - ac) / ac) ** 0.5).numpy()


def spaced_timesteps(spacing: str, steps: int, train_steps: int, offset: int = 0, *,
                     extra_point: bool = False, integer: bool = True, last: int | None = None) -> np.ndarray:
    """The inference timesteps, descending.

    ``extra_point``: DPM-Solver schedulers space N + 1 points and drop the last (t = 0).
    ``integer``: DDIM/DPM-Solver round to int64; Euler/Heun/LMS keep float32 (linspace is
    then fractional). ``last``: DPM-Solver's ``last_timestep`` (T unless λ is clipped).
    """
    if spacing not in SPACINGS:
        raise ValueError(f"Unknown timestep_spacing {spacing!r}; choose one of {', '.join(SPACINGS)}.")
    if not 1 <= steps <= train_steps:
        raise ValueError(f"{steps} inference steps do not fit {train_steps} training timesteps.")
    last = train_steps if last is None else last
    n = steps + 1 if extra_point else steps
    if spacing == "linspace":
        if integer:
            t = np.linspace(0, last - 1, n).round()[::-1].copy().astype(np.int64)
        else:
            t = np.linspace(0, train_steps - 1, n, dtype=np.float32)[::-1].copy()
    elif spacing == "leading":
        ratio = (last // n) if extra_point else (train_steps // steps)
        t = (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64 if integer else np.float32)
        t += offset
    else:
        ratio = train_steps / steps
        t = np.arange(last if extra_point else train_steps, 0, -ratio).round().copy()
        t = t.astype(np.int64 if integer else np.float32)
        t -= 1
        return t  # trailing spaces N points even for DPM-Solver (nothing to drop)
    return t[:-1] if extra_point else t


def karras(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al.'s ρ-spaced σ's (float64), evaluated with numpy as diffusers does."""
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def exponential(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    """σ's uniform in log σ (float64)."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def beta_sigmas(sigma_min: float, sigma_max: float, n: int, a: float = 0.6, b: float = 0.6) -> np.ndarray:
    """σ_min + (σ_max − σ_min)·F⁻¹(1 − i/(n−1)) with F the Beta(a, b) distribution (Lee et al. 2024)."""
    from scipy.stats import beta

    q = beta.ppf(1 - np.linspace(0, 1, n), a, b)
    return np.array([sigma_min + p * (sigma_max - sigma_min) for p in q])


def sigma_to_t(sigmas: np.ndarray, table32: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Fractional timesteps of σ's by linear interpolation in log σ between table entries.

    The log table is float32 (numpy's log of the float32 σ table). The σ's and the
    interpolation are float64 by default (diffusers' σ's from numpy); ``dtype=np.float32``
    keeps every stage in float32, as when diffusers converts float32 torch σ's (KDPM2's
    midpoints; numpy ≥ 2 keeps a float32 σ float32 against a Python float).
    """
    log_table = np.log(table32)
    floor = np.asarray(1e-10, dtype=dtype)
    out = []
    for sigma in np.asarray(sigmas, dtype=dtype):
        log_sigma = np.log(np.maximum(sigma, floor))
        dists = log_sigma - log_table[:, np.newaxis]
        low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_table) - 2)
        lo_val, hi_val = log_table[low], log_table[low + 1]
        w = np.clip((lo_val - log_sigma) / (lo_val - hi_val), 0, 1)
        index = low.astype(dtype)
        out.append(((1 - w) * index + w * (index + 1)).reshape(np.shape(sigma)))
    return np.array(out)


def log_midpoints32(sigmas32: torch.Tensor) -> torch.Tensor:
    """exp((ln σ_i + ln σ_{i−1})/2) at each i ≥ 1 of a float32 σ grid (entry 0 has no
    predecessor and is meaningless), as diffusers' KDPM2 computes its midpoints: in float32,
    through torch's lerp of the log of the grid towards the log of the grid shifted by one.
    Reproducing its bits needs the same operations on a tensor of the same length (torch's
    vectorised and scalar kernels may round the last bit differently)."""
    shifted = torch.roll(sigmas32, 1)
    return torch.lerp(torch.log(sigmas32), torch.log(shifted), 0.5).exp()
