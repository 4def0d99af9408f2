"""The one interface every denoiser implements: D(x; σ).

A denoiser estimates clean data from ``x = y + σ n`` in *unscaled* space (SPEC §1).
Analytic models, preconditioned networks and imported checkpoints all derive from
:class:`Denoiser`, so the sampler, the GUI and the command line treat them alike.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch


class Denoiser(torch.nn.Module):
    """Base class of every D(x; σ).

    Subclasses set the attributes below and implement :meth:`forward`.

    Attributes:
        shape: shape of one sample, e.g. ``(2,)`` for a 2-D toy or ``(3, 32, 32)``.
        sigma_min, sigma_max: the noise range the denoiser is valid for; the sampler
            clamps the run's σ range to it (SPEC §1, "clamped to the denoiser").
        label_dim: number of classes for class-conditional models, else 0.
        data_range: (low, high) of clean data, used for display levels.
        name: short human-readable identifier (shown in the GUI, stored in trajectories).
    """

    shape: tuple[int, ...] = ()
    sigma_min: float = 0.0
    sigma_max: float = math.inf
    label_dim: int = 0
    data_range: tuple[float, float] = (-1.0, 1.0)
    name: str = "denoiser"

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Nearest σ the model supports (identity except for discrete models like iDDPM)."""
        return torch.as_tensor(sigma)

    def forward(  # noqa: D401 - documented in the class docstring
        self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Return D(x; σ) with the shape and dtype of ``x``.

        Args:
            x: ``[B, *shape]`` noisy input in unscaled space.
            sigma: noise level, a 0-dim tensor or ``[B]``, same dtype as ``x``.
            labels: optional ``[B, label_dim]`` one-hot class labels.
        """
        raise NotImplementedError

    @property
    def is_image(self) -> bool:
        """True for ``[C, H, W]`` data with 1 or 3 channels (drawn as pictures)."""
        return len(self.shape) == 3 and self.shape[0] in (1, 3)


def sigma_column(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a 0-dim or ``[B]`` σ against ``x`` of shape ``[B, *shape]``."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


def check_shape(x: torch.Tensor, shape: Sequence[int], who: str) -> None:
    """Raise a readable ValueError when a batch does not match the model's sample shape."""
    if tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"{who} expects samples of shape {tuple(shape)}, got a batch of shape {tuple(x.shape)}."
        )
