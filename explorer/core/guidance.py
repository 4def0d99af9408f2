"""Guidance: classifier-free guidance and autoguidance as a wrapper around D(x; σ).

Both are one formula with a different *guide* (SPEC §1's D, extrapolated away from a worse
denoiser):

    D_w(x; σ, c) = D_guide(x; σ) + w · (D(x; σ, c) − D_guide(x; σ))

* classifier-free guidance (Ho & Salimans 2022): the guide is the same conditional network
  given the null label, the all-zero one-hot row that label dropout trained as the
  unconditional model (``RunConfig.guide`` is None);
* autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of
  itself"): the guide is a weaker model of the same kind, e.g. an early EMA snapshot of the
  same run or a shorter-trained release (``RunConfig.guide`` names it: a shipped name such as
  ``fashion32-edm-guide`` or a file), given the same label as the main model (none if the guide is
  unconditional).

w = 1 is the unguided model: the wrapper then calls the main network alone, so a run with
w = 1 is the unguided run exactly. For classifier-free guidance w = 0 is the unconditional
model (one call with the null label).

Why a run-level field and not a solver option (:mod:`explorer.core.solvers.options`): solver
options are settings of one integration rule, declared per solver; guidance changes D itself,
so it applies to every solver the same way and the solvers never see it. The solvers call
``ctx.denoise`` as always; :func:`guided` wraps the denoiser before the run starts.

Counting: the NFE of a run counts *solver evaluations* of D_w, as for an unguided run, so the
NFE of a guided and an unguided run on the same grid agree. One guided evaluation costs two
network calls (:attr:`GuidedDenoiser.calls_per_eval`), except at w = 1 (and w = 0 for
classifier-free guidance), which cost one.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from explorer.core.denoiser import Denoiser

GuideLoader = Callable[[str, torch.device], Denoiser]


class GuidedDenoiser(Denoiser):
    """D_w of a main denoiser and a guide (see the module docstring).

    Args:
        main: the model being sampled.
        scale: the guidance weight w ≥ 0.
        guide: the weaker model of autoguidance, or None for classifier-free guidance.
    """

    def __init__(self, main: Denoiser, scale: float, guide: Optional[Denoiser] = None) -> None:
        super().__init__()
        for name in ("shape", "sigma_min", "sigma_max", "label_dim", "data_range", "name"):
            setattr(self, name, getattr(main, name))
        self.main, self.guide, self.scale = main, guide, float(scale)
        if guide is not None:
            if tuple(guide.shape) != tuple(main.shape):
                raise ValueError(f"The guide {guide.name!r} draws samples of shape {tuple(guide.shape)}, "
                                 f"the model {main.name!r} of shape {tuple(main.shape)}.")
            if guide.label_dim not in (0, main.label_dim):
                raise ValueError(f"The guide {guide.name!r} has {guide.label_dim} classes, "
                                 f"the model {main.name!r} {main.label_dim}.")
        self.calls = 0  # network calls made, for the record (NFE counts evaluations of D_w)

    @property
    def calls_per_eval(self) -> int:
        """Network calls per evaluation of D_w: 1 when it is a single model, else 2."""
        single = self.scale == 1.0 or (self.guide is None and self.scale == 0.0)
        return 1 if single else 2

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.main.round_sigma(sigma)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.calls += self.calls_per_eval
        if self.scale == 1.0:
            return self.main(x, sigma, labels)
        if self.guide is None:
            if labels is None:
                raise ValueError("Classifier-free guidance needs a class: choose a class label (or set w = 1).")
            weak = self.main(x, sigma, torch.zeros_like(labels))  # the null label: the unconditional model
            if self.scale == 0.0:
                return weak
        else:
            weak = self.guide(x, sigma, labels if self.guide.label_dim else None)
        strong = self.main(x, sigma, labels)
        return strong.sub(weak).mul_(self.scale).add_(weak)


def needs_guide(scale: float, guide: Optional[str]) -> bool:
    """Whether a run must load its guide (w = 1 never calls it)."""
    return guide is not None and scale != 1.0


def guided(main: Denoiser, scale: float, guide: Optional[Denoiser] = None) -> Denoiser:
    """``main`` itself for w = 1 without a guide, else the :class:`GuidedDenoiser`.

    Raises ValueError when classifier-free guidance is asked of an unconditional model.
    """
    if scale == 1.0:
        return main
    if guide is None and main.label_dim <= 0:
        raise ValueError(f"Classifier-free guidance needs a class-conditional model; {main.name!r} has no classes. "
                         "Name a guide for autoguidance, or set w = 1.")
    return GuidedDenoiser(main, scale, guide)


def check_fits(denoiser: Denoiser, scale: float, guide: Optional[str], label: Optional[int]) -> None:
    """Before a run (the GUI's check): classifier-free guidance needs a conditional model and a class."""
    if scale == 1.0 or guide is not None:
        return
    if denoiser.label_dim <= 0:
        raise ValueError(f"Classifier-free guidance needs a class-conditional model; {denoiser.name!r} has no classes. "
                         "Pick a guide for autoguidance, or set w = 1.")
    if label is None:
        raise ValueError("Classifier-free guidance needs a class: choose a class label (or set w = 1).")


_GUIDES: dict[tuple[str, str], tuple[float, Denoiser]] = {}


def load_guide(spec: str, device: torch.device) -> Denoiser:
    """The guide a config names, loaded once per (name, device) and kept while its file is unchanged.

    The model loader lives outside the core (it knows files and formats); it is imported here
    only when a run names a guide.
    """
    from pathlib import Path

    from explorer.models.loader import load_denoiser, shipped_checkpoints

    path = shipped_checkpoints().get(spec, Path(spec).expanduser())
    stamp = path.stat().st_mtime if path.is_file() else 0.0
    key = (spec, str(device))
    hit = _GUIDES.get(key)
    if hit is None or hit[0] != stamp:
        try:
            den = load_denoiser(spec, device=str(device)).eval()
        except ValueError as err:
            raise ValueError(f"The guide could not be loaded: {err}") from None
        hit = _GUIDES[key] = (stamp, den)
    return hit[1]
