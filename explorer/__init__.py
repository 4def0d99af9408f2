"""diffusion-explorer: see how diffusion models sample.

The public API::

    from explorer import RunConfig, sample, toy
    traj = sample(toy("ring"), RunConfig(solver="heun", steps=18, batch=64))
    traj.save("run.safetensors")

The names come from :mod:`explorer.core` on first use, so ``import explorer`` (and
``diffusion-explorer --help``) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    core = importlib.import_module("explorer.core")  # not `from explorer import core`: that asks __getattr__

    if name in core.__all__:
        return getattr(core, name)
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")


def __dir__() -> list[str]:
    core = importlib.import_module("explorer.core")  # not `from explorer import core`: that asks __getattr__

    return sorted(set(globals()) | set(core.__all__))


__all__ = [  # explorer.core's names (a test keeps the two lists equal) and the version
    "DISCRETIZATIONS", "Denoiser", "FINALS", "GMMDenoiser", "GaussianDenoiser", "IdealDenoiser", "NonFiniteError",
    "PROCESSES", "Process", "RunConfig", "SOLVERS", "SolverInfo", "StepEvent", "TOYS", "Trajectory", "get_solver",
    "gmm_from_spec", "load_gmm_json", "make_plan", "plan_run", "predicted_nfe", "sample", "sample_steps", "toy",
    "__version__",
]
