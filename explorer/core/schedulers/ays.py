"""Align Your Steps (Sabour, Fidler and Kreis 2024): published 10-step σ tables as grids.

The σ's are NVIDIA's, from the AYS project page ("howto"): EDM-parameterized σ's (VP models
seen as σ = sqrt((1 − ᾱ)/ᾱ)) for Stable Diffusion 1.5, SDXL and Stable Video Diffusion. Other
step counts are interpolated linearly in log σ, as that page recommends; the last σ is then
replaced by 0 so the run ends with the usual step to σ = 0 (as ComfyUI's node does).
"""
from __future__ import annotations

import numpy as np

from explorer.core.grids import Grid

AYS_SIGMAS: dict[str, tuple[float, ...]] = {
    "SD1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
            0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "SDXL": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
             0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "SVD": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}


def loglinear(values: tuple[float, ...], n: int) -> np.ndarray:
    """n points through a decreasing list, linear in log σ against a uniform index."""
    xs = np.linspace(0, 1, len(values))
    ys = np.log(np.asarray(values, dtype=np.float64)[::-1])
    return np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1].copy()


def ays_grid(model: str, steps: int = 10, final_zero: bool = True) -> Grid:
    """The AYS grid of ``model`` (SD1, SDXL or SVD) with ``steps`` steps."""
    key = {k.lower(): k for k in AYS_SIGMAS}.get(model.lower())
    if key is None:
        raise ValueError(f"No Align Your Steps table for {model!r}; choose one of {', '.join(AYS_SIGMAS)}.")
    if steps < 1:
        raise ValueError(f"A grid needs at least one step (got {steps}).")
    table = AYS_SIGMAS[key]
    sig = np.asarray(table, dtype=np.float64) if steps + 1 == len(table) else loglinear(table, steps + 1)
    if final_zero:
        sig[-1] = 0.0
    return Grid(tuple(sig.tolist()), source=f"Align Your Steps {key}, {steps} steps",
                info={"table": key, "interpolated": steps + 1 != len(table)})
