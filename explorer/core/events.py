"""What a run emits: one :class:`StepEvent` per state of the trajectory."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class StepEvent:
    """The state after step ``index`` (index 0 is the initial state, before any step).

    Tensors live on the run's device and are never modified afterwards, so a consumer
    may keep references without copying. ``x`` is in the process's own scaled space;
    ``denoised`` is D at the step's first evaluation (the "x₀" image, unscaled).

    Attributes:
        index: 0 for the initial state, then 1, 2, … for each completed step.
        t, sigma, scale: time, σ(t) and s(t) of ``x``.
        x: ``[B, *shape]`` state.
        denoised: ``[B, *shape]`` x₀ estimate of the step (None for index 0).
        eval_sigma: σ of every D evaluation made during the step.
        eval_x: the unscaled inputs of those evaluations (empty if not recorded).
        nfe: evaluations of D so far.
        total_steps: the number of steps the run will take, when known in advance.
        order: the order of the step just taken (None when not applicable).
        noise: the run's latents ``[B, *shape]`` (index 0 only).
    """

    index: int
    t: float
    sigma: float
    scale: float
    x: torch.Tensor
    denoised: Optional[torch.Tensor]
    nfe: int
    total_steps: Optional[int]
    eval_sigma: list[float] = field(default_factory=list)
    eval_x: list[torch.Tensor] = field(default_factory=list)
    order: Optional[int] = None
    noise: Optional[torch.Tensor] = None  # the latents, on the initial event only
