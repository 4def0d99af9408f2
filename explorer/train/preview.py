"""Draw samples from a (training or shipped) denoiser with the engine, and tile them into a PNG.

The loop calls :func:`save_sample_grid` now and then so a run's progress can be seen; the FD
command uses :func:`batch_sampler` to draw thousands of samples batch by batch. Both go through
the engine's ``final_samples``, so the pictures are exactly what the explorer would draw.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from explorer.core.config import RunConfig
from explorer.core.sampling import final_samples


def batch_sampler(denoiser: torch.nn.Module, config: RunConfig) -> Callable[[int, int], torch.Tensor]:
    """``fn(batch_size, batch_index)`` drawing disjoint seeds: batch i starts at seed + i·batch.

    Sample k of the whole set therefore always has seed ``config.seed + k`` (for equal batch sizes).
    """
    def draw(size: int, index: int) -> torch.Tensor:
        return final_samples(denoiser, config.replace(batch=size, seed=config.seed + index * config.batch))

    return draw


def save_grid(images: torch.Tensor, path: Path, columns: Optional[int] = None) -> None:
    """Write ``[B, C, H, W]`` images in [-1, 1] as one PNG mosaic (the exporters' own tiling)."""
    from explorer.export.images import tile, to_pil, to_uint8

    to_pil(tile(to_uint8(images), columns)).save(path)


def save_sample_grid(trainer, path: Path, count: int = 64, steps: int = 18, seed: int = 0) -> None:
    """64 EMA samples with EDM's Heun sampler (18 steps, 35 NFE) from fixed seeds, as a PNG.

    The same seeds every time, so successive grids of one run show the same samples improving.
    EDM's own sampler (process edm, EDM time steps) serves every preconditioning, as in EDM's
    experiments on VP and VE networks.
    """
    config = RunConfig(process="edm", disc="edm", solver="heun", steps=steps, seed=seed, batch=count,
                       device=trainer.device.type)
    was_training = trainer.ema.module.training
    images = final_samples(trainer.ema.module.eval(), config)
    trainer.ema.module.train(was_training)
    save_grid(images, path, columns=8)
