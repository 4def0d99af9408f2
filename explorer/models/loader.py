"""Resolve what a user names as ``--model`` (or picks in the app) into a Denoiser.

Accepted: a built-in name (the 2-D toys, ``gaussian``, ``default``, a shipped
checkpoint's stem), a mixture ``.json``, an array ``.npy``/``.npz`` (ideal denoiser of
that data set), our checkpoint ``.safetensors``, an official EDM ``.pkl``, or a
diffusers ``UNet2DModel`` folder. Every failure is a ``ValueError`` naming the file.
"""
from __future__ import annotations

import math

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from explorer.core.analytic import TOYS, GaussianDenoiser, IdealDenoiser, load_gmm_json, toy
from explorer.core.denoiser import Denoiser

DEFAULT_CHECKPOINT = "fashion32-edm"
DEFAULT_TOY = "ring"
MAX_DATASET_BYTES = 1024**3  # an ideal denoiser's data set, read as float64 and compared with every sample


def checkpoint_dir() -> Path:
    """Where the shipped checkpoints live (``$EXPLORER_CHECKPOINTS`` overrides)."""
    env = os.environ.get("EXPLORER_CHECKPOINTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "checkpoints"


def shipped_checkpoints() -> dict[str, Path]:
    folder = checkpoint_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.safetensors"))}


def builtin_names() -> list[str]:
    """Names a user can pick without a file: shipped checkpoints, then the analytic toys."""
    return list(shipped_checkpoints()) + ["gaussian"] + list(TOYS)


def default_model_name() -> str:
    """The app's default denoiser: the shipped Fashion-MNIST model, or a toy without it."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in shipped_checkpoints() else DEFAULT_TOY


def load_denoiser(spec: str, device: str = "cpu") -> Denoiser:
    """Load a denoiser from a name or a path (see the module docstring)."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("No model given.")
    if spec == "default":
        spec = default_model_name()
    if spec in TOYS:
        return toy(spec)
    if spec == "gaussian":
        return GaussianDenoiser((2,), mean=0.0, std=0.5, name="gaussian")
    shipped = shipped_checkpoints()
    if spec in shipped:
        return _load_checkpoint(shipped[spec], device)
    path = Path(spec).expanduser()
    if not path.exists():
        known = ", ".join(builtin_names())
        raise ValueError(f"No model named {spec!r}: not a built-in ({known}) and no such file.")
    return _load_path(path, device)


def _load_path(path: Path, device: str) -> Denoiser:
    if path.is_dir():
        from explorer.models.diffusers_import import load_diffusers_folder

        return load_diffusers_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return load_gmm_json(path)
    if suffix in (".npy", ".npz"):
        return IdealDenoiser(_read_array(path), name=path.stem)
    if suffix == ".safetensors":
        return _load_checkpoint(path, device)
    if suffix == ".pkl":
        from explorer.models.edm_import import load_edm_pickle

        return load_edm_pickle(path, device=device)
    raise ValueError(f"Don't know how to open {path.name}: expected .safetensors, .pkl, .json, .npy/.npz or a diffusers folder.")


def _load_checkpoint(path: Path, device: str) -> Denoiser:
    from explorer.models.checkpoint import load_checkpoint
    from explorer.models.diffusers_import import is_diffusers_checkpoint, load_diffusers_checkpoint

    if is_diffusers_checkpoint(path):  # a diffusers UNet converted to one file
        return load_diffusers_checkpoint(path, device=device)
    return load_checkpoint(path, device=device)


def _read_array(path: Path) -> torch.Tensor:
    """The first array of a ``.npy``/``.npz`` data set (sizes checked before reading, never unpickled)."""
    from explorer.core.files import read_arrays

    arrays = read_arrays(path, max_bytes=MAX_DATASET_BYTES)
    if not arrays:
        raise ValueError(f"{path.name} holds no arrays.")
    arr = next(iter(arrays.values()))
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{path.name} does not hold numbers.")
    return torch.from_numpy(np.array(arr, dtype=np.float64))  # a writable copy


def describe(denoiser: Denoiser, run_range: Optional[tuple[float, float]] = None) -> str:
    """One line about a denoiser, for the CLI and the GUI's status bar.

    A denoiser defined at every σ (EDM preconditioning, analytic toys) says so rather than
    "σ ∈ [0, inf]"; ``run_range`` adds the σ range the current run actually covers (its plan's).
    """
    shape = "×".join(map(str, denoiser.shape))
    lo, hi = denoiser.sigma_min, denoiser.sigma_max
    rng = "any σ" if lo <= 0 and math.isinf(hi) else f"σ ∈ [{lo:g}, {hi:g}]"
    if run_range is not None:
        rng += f"; run σ {run_range[0]:.3g}–{run_range[1]:.3g}"
    labels = f", {denoiser.label_dim} classes" if denoiser.label_dim else ""
    return f"{denoiser.name}: samples {shape}, {rng}{labels}"


def label_names(denoiser: Denoiser) -> Optional[list[str]]:
    return getattr(denoiser, "label_names", None)
