"""diffusion-explorer: see how diffusion models sample.

The public API::

    from explorer import RunConfig, sample, toy
    traj = sample(toy("ring"), RunConfig(solver="heun", steps=18, batch=64))
    traj.save("run.safetensors")
"""
__version__ = "0.1.0"

from explorer.core import *  # noqa: E402,F401,F403
from explorer.core import __all__ as _core_all  # noqa: E402

__all__ = list(_core_all) + ["__version__"]
