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


def sigma_to_t(sigmas: np.ndarray, table32: np.ndarray) -> np.ndarray:
    """Fractional timesteps of σ's by linear interpolation in log σ between table entries.

    The log table is float32 (numpy's log of the float32 σ table), the σ's float64.
    """
    log_table = np.log(table32)
    out = []
    for sigma in np.asarray(sigmas, dtype=np.float64):
        log_sigma = np.log(np.maximum(sigma, 1e-10))
        dists = log_sigma - log_table[:, np.newaxis]
        low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=len(log_table) - 2)
        lo_val, hi_val = log_table[low], log_table[low + 1]
        w = np.clip((lo_val - log_sigma) / (lo_val - hi_val), 0, 1)
        out.append(((1 - w) * low + w * (low + 1)).reshape(np.shape(sigma)))
    return np.array(out)
