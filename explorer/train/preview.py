"""Draw samples from a (training or shipped) denoiser with the engine, and tile them into a PNG.

The loop calls :func:`save_sample_grid` now and then so a run's progress can be seen; the FD
command uses :func:`final_samples` to draw thousands of samples batch by batch. Both go
through the engine's own sampler, so the pictures are exactly what the explorer would draw.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from explorer.core.config import RunConfig


def final_samples(denoiser: torch.nn.Module, config: RunConfig, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Run the configured sampler and return only the final state ``[B, *shape]``.

    Intermediate states are not kept (``record_evals=False`` and only the last event is held),
    so memory stays at one batch however many steps the solver takes.
    """
    from explorer.core.sampling import sample_steps

    last = None
    for event in sample_steps(denoiser, config, noise=noise, record_evals=False, to_host=False):
        last = event
    return last.x / last.scale


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
