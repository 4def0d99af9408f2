"""Exponential moving average of network weights, with its half-life counted in images.

Following EDM (Karras et al. 2022, training loop): the averaging speed is set by a half-life in
training images rather than a per-step decay, so it does not change with the batch size, and
early in training the half-life is capped at a fixed fraction of the images seen so far
(``rampup``), so the average forgets the random initialization quickly. EDM's CIFAR-10 values
are a 500k-image half-life and a ratio of 0.05.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch


def ema_beta(batch: int, images_seen: int, halflife_images: float, rampup: Optional[float]) -> float:
    """Per-step decay β so that the weight of old parameters halves every ``halflife`` images."""
    halflife = float(halflife_images)
    if rampup is not None and rampup > 0:
        halflife = min(halflife, images_seen * rampup)
    return 0.5 ** (batch / max(halflife, 1e-8))


class EMA:
    """A frozen copy of a module whose parameters track the live ones; buffers are copied."""

    def __init__(self, module: torch.nn.Module, halflife_images: float = 500_000, rampup: Optional[float] = 0.05):
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.halflife_images = halflife_images
        self.rampup = rampup

    @torch.no_grad()
    def update(self, live: torch.nn.Module, batch: int, images_seen: int) -> float:
        """Blend in the live weights after a step; returns the β used."""
        beta = ema_beta(batch, images_seen, self.halflife_images, self.rampup)
        ema_params = list(self.module.parameters())
        live_params = list(live.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in live_params], 1.0 - beta)
        for b_ema, b_live in zip(self.module.buffers(), live.buffers()):
            b_ema.copy_(b_live)
        return beta

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
