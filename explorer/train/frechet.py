"""Fréchet distance between image sets, measured in the Fashion classifier's feature space.

FD(N(μ₁, Σ₁), N(μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2}) (Dowson & Landau 1982;
the formula behind FID, Heusel et al. 2017). The reference statistics of the Fashion-MNIST
training split are cached next to the classifier so that a score needs only the samples.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import numpy as np
import scipy.linalg
import torch

from explorer.models.classifier import DEFAULT_CLASSIFIER, FashionClassifier, RESOURCE_DIR, load_classifier

REFERENCE_STATS = RESOURCE_DIR / "fashion_train_stats.npz"


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``[N, D]`` features, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"Fréchet statistics need at least two feature vectors [N, D], got shape {features.shape}.")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """The Fréchet (2-Wasserstein) distance between two Gaussians, squared units.

    When Σ₁Σ₂ is nearly singular ``sqrtm`` can return a poor root; as in common FID code,
    a tiny multiple of the identity is then added to both covariances. Round-off leaves an
    imaginary part of order 1e-10 that is dropped; a large one means the input is broken.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError("The two sets of statistics have different feature dimensions.")
    with warnings.catch_warnings():  # singular products are handled just below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(root).all():
        eps = 1e-6 * np.eye(mu1.size)
        root = scipy.linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    if np.iscomplexobj(root):
        if np.abs(root.imag).max() > 1e-3 * max(1.0, np.abs(root.real).max()):
            raise ValueError("The covariance product has a large imaginary square root; the statistics are invalid.")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(root))


@torch.no_grad()
def extract_features(
    model: FashionClassifier, batches: Iterator[torch.Tensor], device: Union[str, torch.device] = "cpu"
) -> np.ndarray:
    """Penultimate features of every image that the iterator yields, stacked ``[N, D]``."""
    model = model.to(device).eval()
    out = [model.features(b.to(device=device, dtype=torch.float32)).cpu().numpy() for b in batches]
    if not out:
        raise ValueError("No images were given to compute features of.")
    return np.concatenate(out).astype(np.float64)


def tensor_batches(images: torch.Tensor, batch: int = 1000) -> Iterator[torch.Tensor]:
    """Slice a tensor of images into batches (for :func:`extract_features`)."""
    for i in range(0, len(images), batch):
        yield images[i : i + batch]


def sampler_batches(sample_fn: Callable[[int, int], torch.Tensor], num: int, batch: int) -> Iterator[torch.Tensor]:
    """Draw ``num`` samples in batches from ``sample_fn(batch_size, batch_index)``, clamped to [-1, 1].

    Clamping is what any image writer does; the classifier never saw values outside the data range.
    """
    if num < 2 or batch < 1:
        raise ValueError(f"FD needs at least 2 samples and a positive batch size, got num={num}, batch={batch}.")
    for index, start in enumerate(range(0, num, batch)):
        images = sample_fn(min(batch, num - start), index)
        if not torch.isfinite(images).all():
            raise ValueError(f"Batch {index} of samples holds NaN or infinite values; the sampler diverged.")
        yield images.clamp(-1.0, 1.0)


def reference_statistics(
    model: Optional[FashionClassifier] = None,
    cache: Optional[Path] = REFERENCE_STATS,
    data_dir: Optional[str] = None,
    device: Union[str, torch.device] = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Feature mean and covariance of the Fashion-MNIST training split, cached as ``.npz``."""
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as npz:
            return npz["mu"], npz["cov"]
    from explorer.train.datasets import load_fashion

    if model is None:
        model, _ = load_classifier(DEFAULT_CLASSIFIER)
    feats = extract_features(model, tensor_batches(load_fashion("train", data_dir).images), device)
    mu, cov = feature_statistics(feats)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, mu=mu.astype(np.float64), cov=cov.astype(np.float64))
    return mu, cov


def fd_against_fashion(
    sample_fn: Callable[[int, int], torch.Tensor],
    num: int = 10_000,
    batch: int = 500,
    device: Union[str, torch.device] = "cpu",
    classifier_path: Optional[Union[str, os.PathLike]] = None,
) -> float:
    """FD between ``num`` samples of ``sample_fn`` and the Fashion-MNIST training split."""
    return fd_of_batches(sampler_batches(sample_fn, num, batch), device, classifier_path)


def fd_of_batches(
    batches: Iterator[torch.Tensor],
    device: Union[str, torch.device] = "cpu",
    classifier_path: Optional[Union[str, os.PathLike]] = None,
) -> float:
    """FD between images already drawn (e.g. a ``generate`` folder) and the training split."""
    model, _ = load_classifier(classifier_path, device=str(device))
    mu_ref, cov_ref = reference_statistics(model, device=device)
    feats = extract_features(model, (b.clamp(-1.0, 1.0) for b in batches), device)
    if len(feats) < 2:
        raise ValueError("FD needs at least 2 samples.")
    mu, cov = feature_statistics(feats)
    return frechet_distance(mu, cov, mu_ref, cov_ref)
