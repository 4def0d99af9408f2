"""Denoising score-matching losses of SPEC §3 "Training": E λ(σ) ‖D(y + n; σ) − y‖².

Each loss draws σ per sample from its own training distribution, adds noise and weighs the
squared error by λ(σ). The distributions and weights are those of Karras et al. 2022 (EDM,
Table 1): VP and VE follow Song et al. 2021, EDM uses a log-normal σ with λ chosen so that the
network F's own regression target has unit weight. The result is the mean over pixels of each
sample, ``[B]``; the loop averages it over the batch.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

# A denoiser D(x, sigma, labels) -> x0 estimate, as the preconditioners implement it.
DenoiseFn = Callable[..., torch.Tensor]


def _per_sample(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


def _vp_sigma(t: torch.Tensor, beta_d: float, beta_min: float) -> torch.Tensor:
    """σ_vp(t) = sqrt(exp(½ β_d t² + β_min t) − 1) (SPEC §1)."""
    return torch.expm1(0.5 * beta_d * t**2 + beta_min * t).sqrt()


class DiffusionLoss:
    """Common noising and weighting; subclasses choose σ's distribution and λ(σ)."""

    name = "base"

    def sample_sigma(self, n: int, device: torch.device, generator: Optional[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self,
        denoiser: DenoiseFn,
        images: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Per-sample weighted squared error ``[B]`` (float32) for one batch of clean images."""
        sigma = self.sample_sigma(images.shape[0], images.device, generator)
        noise = torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=generator)
        sig = sigma.reshape(-1, *([1] * (images.ndim - 1)))
        denoised = denoiser(images + sig * noise, sigma, labels).float()
        return self.weight(sigma) * _per_sample((denoised - images.float()) ** 2)


class EDMLoss(DiffusionLoss):
    """EDM: ln σ ~ N(P_mean, P_std²), λ = (σ² + σ_d²)/(σ σ_d)²."""

    name = "edm"

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5):
        self.p_mean, self.p_std, self.sigma_data = p_mean, p_std, sigma_data

    def sample_sigma(self, n, device, generator):
        normal = torch.randn(n, device=device, generator=generator)
        return (normal * self.p_std + self.p_mean).exp()

    def weight(self, sigma):
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2


class VPLoss(DiffusionLoss):
    """VP: σ = σ_vp(1 + u(ε_t − 1)), u ~ U[0, 1], λ = 1/σ²."""

    name = "vp"

    def __init__(self, beta_d: float = 19.9, beta_min: float = 0.1, epsilon_t: float = 1e-5):
        self.beta_d, self.beta_min, self.epsilon_t = beta_d, beta_min, epsilon_t

    def sample_sigma(self, n, device, generator):
        u = torch.rand(n, device=device, generator=generator)
        return _vp_sigma(1 + u * (self.epsilon_t - 1), self.beta_d, self.beta_min)

    def weight(self, sigma):
        return 1.0 / sigma**2


class VELoss(DiffusionLoss):
    """VE: σ = σ_min (σ_max/σ_min)^u, u ~ U[0, 1], λ = 1/σ²."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.02, sigma_max: float = 100.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE loss needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max

    def sample_sigma(self, n, device, generator):
        u = torch.rand(n, device=device, generator=generator)
        return self.sigma_min * torch.exp(u * math.log(self.sigma_max / self.sigma_min))

    def weight(self, sigma):
        return 1.0 / sigma**2


LOSSES = {"edm": EDMLoss, "vp": VPLoss, "ve": VELoss}


def make_loss(precond: str) -> DiffusionLoss:
    """The loss that belongs to a preconditioning (``edm``, ``vp`` or ``ve``)."""
    try:
        return LOSSES[precond]()
    except KeyError:
        raise ValueError(f"No training loss for precond {precond!r}; choose one of {', '.join(LOSSES)}.") from None
