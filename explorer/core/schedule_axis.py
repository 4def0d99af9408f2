"""Schedules as a comparison axis (issue #12): sweeps and comparisons whose runs differ by grid.

A schedule spec is one of ``default`` (the base configuration's own), a discretization name
(``edm``, ``logsnr``, ``time-uniform``, …), ``rho=R`` (edm with that ρ), ``shift=S``,
``ays:SD1|SDXL|SVD`` (Align Your Steps), ``optimized`` (steps optimized for the run's solver
and step count on the denoiser itself) or a grid file (``.json``/``.npy``; used where its
step count is the run's).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.discretization import DISCRETIZATIONS

SCHEDULE_HELP = ("default, a discretization (" + ", ".join(DISCRETIZATIONS) + "), rho=R, shift=S, "
                 "ays:SD1|SDXL|SVD, optimized, or a grid file (.json/.npy)")


def parse_schedules(text: str) -> list[str]:
    specs = [s.strip() for s in str(text).split(",") if s.strip()]
    if not specs:
        raise ValueError(f"Give at least one schedule: {SCHEDULE_HELP}.")
    for spec in specs:
        check_spec(spec)
    return specs


def check_spec(spec: str) -> None:
    """A ValueError naming the spec when it is none of the known forms (files must exist)."""
    if spec in ("default", "optimized") or spec in DISCRETIZATIONS or spec.startswith("ays:"):
        return
    if spec.startswith(("rho=", "shift=")):
        try:
            float(spec.split("=", 1)[1])
        except ValueError:
            raise ValueError(f"Schedule {spec!r}: the value after '=' must be a number.") from None
        return
    if Path(spec).suffix.lower() in (".json", ".npy"):
        if not Path(spec).exists():
            raise FileNotFoundError(f"Schedule grid file {spec} does not exist.")
        return
    raise ValueError(f"Unknown schedule {spec!r}; use {SCHEDULE_HELP}.")


def schedule_name(spec: str) -> str:
    return Path(spec).stem if Path(spec).suffix.lower() in (".json", ".npy") else spec


def schedule_config(spec: str, config: RunConfig, steps: int, denoiser: Optional[Denoiser] = None) -> RunConfig:
    """``config`` (already at ``steps`` steps) on the schedule ``spec``; ValueError when it cannot be."""
    check_spec(spec)
    label = schedule_name(spec)
    if spec == "default":
        return config.replace(schedule_label=label)
    if spec in DISCRETIZATIONS:
        return config.replace(disc=spec, schedule_label=label)
    if spec.startswith("rho="):
        return config.replace(disc="edm", rho=float(spec[4:]), schedule_label=label)
    if spec.startswith("shift="):
        return config.replace(shift=float(spec[6:]), schedule_label=label)
    fixed = config.replace(steps=steps, nfe=None)
    if spec.startswith("ays:"):
        from explorer.core.schedulers.ays import ays_grid

        grid = ays_grid(spec[4:], steps, final_zero=config.final == "zero")
    elif spec == "optimized":
        if denoiser is None:
            raise ValueError("The 'optimized' schedule needs the denoiser.")
        from explorer.core.optimize_steps import optimize_steps

        grid = optimize_steps(denoiser, fixed, steps).grid
    else:
        from explorer.core.grids import load_grid

        grid = load_grid(spec)
        if grid.steps != steps:
            raise ValueError(f"{label}: the grid file has {grid.steps} steps, not {steps}.")
    return fixed.replace(sigmas=grid.sigmas, timesteps=grid.timesteps, schedule_label=label)
