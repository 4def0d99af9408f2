"""Latents and noise streams that do not depend on the batch size.

Sample k of a run with seed S draws everything from its own ``torch.Generator`` seeded
S + k (as EDM's ``generate.py`` does per image): first its latents (float32, then cast,
as EDM), then any noise a stochastic solver needs. So sample k is the same in a batch of
1 and of 8, and a run is reproducible from (seed, batch).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


class NoiseStreams:
    """One CPU generator per sample; draws are stacked into a batch.

    The generators are made on the first draw, so runs with given latents and a
    deterministic solver never pay for a generator per sample.
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = [int(s) for s in seeds]
        self._generators: list[torch.Generator] = []

    @property
    def generators(self) -> list[torch.Generator]:
        if not self._generators:
            self._generators = [torch.Generator().manual_seed(s % (1 << 63)) for s in self.seeds]
        return self._generators

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
        """A ``[B, *shape]`` standard normal draw, sample k from stream k."""
        draws = [torch.randn(tuple(shape), generator=g, dtype=dtype) for g in self.generators]
        return torch.stack(draws).to(device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(x.shape[1:], dtype=x.dtype, device=x.device)


def seeds_for(seed: int, batch: int) -> list[int]:
    return [seed + k for k in range(batch)]


def load_noise(path: str | Path, shape: Sequence[int]) -> torch.Tensor:
    """Latents from ``.npy``, ``.npz`` (first array, or ``noise``) or ``.safetensors`` (key ``noise``).

    Checked against the model's sample shape; sizes are checked before anything is read
    (:mod:`explorer.core.files`), so a forged header or a zip bomb is refused, not allocated.
    """
    from explorer.core.files import read_arrays, read_safetensors

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Noise file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        arrays = read_arrays(path)
        if not arrays:
            raise ValueError(f"Noise file {path.name} holds no arrays.")
        arr = arrays.get("noise", next(iter(arrays.values())))
        if arr.dtype.kind != "f":
            raise ValueError(f"Noise in {path.name} must be floating-point numbers, not {arr.dtype}.")
        arr = torch.from_numpy(np.array(arr))
    elif suffix == ".safetensors":
        tensors, _ = read_safetensors(path, names={"noise"})
        if "noise" not in tensors:
            raise ValueError(f"Noise file {path.name} has no tensor named 'noise'.")
        arr = tensors["noise"]
    else:
        raise ValueError(f"Noise file {path.name} must be .npy, .npz or .safetensors.")
    if arr.ndim == len(shape):
        arr = arr.unsqueeze(0)
    if tuple(arr.shape[1:]) != tuple(shape) or arr.shape[0] < 1:
        raise ValueError(f"Noise in {path.name} has shape {tuple(arr.shape)}; the denoiser needs [B, {', '.join(map(str, shape))}].")
    if not torch.is_floating_point(arr) or not torch.isfinite(arr).all():
        raise ValueError(f"Noise in {path.name} must be finite floating-point numbers.")
    return arr
