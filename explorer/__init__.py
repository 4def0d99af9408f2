"""diffusion-explorer: see how diffusion models sample.

The public API::

    from explorer import RunConfig, sample, toy
    traj = sample(toy("ring"), RunConfig(solver="heun", steps=18, batch=64))
    traj.save("run.safetensors")

The names come from :mod:`explorer.core` on first use, so ``import explorer`` (and
``diffusion-explorer --help``) does not import torch.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    import explorer.core as core

    if name in core.__all__:
        return getattr(core, name)
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")


def __dir__() -> list[str]:
    import explorer.core as core

    return sorted(set(globals()) | set(core.__all__))


def _public() -> list[str]:
    import explorer.core as core

    return list(core.__all__) + ["__version__"]


__all__ = _public()
