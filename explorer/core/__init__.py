"""The sampling engine: torch, numpy and scipy only, never Qt.

Names are imported on first use (PEP 562), so ``import explorer`` and the CLI's parser
cost no torch import; ``from explorer.core import RunConfig`` works as before.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "explorer.core.analytic": ["GaussianDenoiser", "GMMDenoiser", "IdealDenoiser", "gmm_from_spec", "load_gmm_json", "toy", "TOYS"],
    "explorer.core.config": ["RunConfig"],
    "explorer.core.denoiser": ["Denoiser"],
    "explorer.core.discretization": ["DISCRETIZATIONS", "FINALS"],
    "explorer.core.events": ["StepEvent"],
    "explorer.core.plan": ["plan_run", "predicted_nfe"],
    "explorer.core.process": ["PROCESSES", "Process"],
    "explorer.core.sampling": ["NonFiniteError", "make_plan", "sample", "sample_steps"],
    "explorer.core.solvers": ["SOLVERS", "SolverInfo", "get_solver"],
    "explorer.core.trajectory": ["Trajectory"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "DISCRETIZATIONS", "Denoiser", "FINALS", "GMMDenoiser", "GaussianDenoiser", "IdealDenoiser", "NonFiniteError",
    "PROCESSES", "Process", "RunConfig", "SOLVERS", "SolverInfo", "StepEvent", "TOYS", "Trajectory", "get_solver",
    "gmm_from_spec", "load_gmm_json", "make_plan", "plan_run", "predicted_nfe", "sample", "sample_steps", "toy",
]
assert sorted(__all__) == sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
