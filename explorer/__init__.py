"""diffusion-explorer: see how diffusion models sample.

The public API is re-exported here; see :mod:`explorer.core` for the engine.
"""
__version__ = "0.1.0"
