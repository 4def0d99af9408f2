"""Sampling: a generator of step events, and a call that runs to completion.

``sample_steps`` is the engine's one loop. It yields the initial state, then one
:class:`StepEvent` per step; the consumer cancels a run simply by not asking for the
next event (``close()``), so cancellation is honoured at every step. A NaN or infinity
stops the run with an error naming the step and σ.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.events import StepEvent
from explorer.core.latents import NoiseStreams, seeds_for
from explorer.core.plan import plan_run
from explorer.core.solvers import get_solver
from explorer.core.solvers.context import Plan, SolverContext
from explorer.core.trajectory import Trajectory, TrajectoryRecorder


class NonFiniteError(ValueError):
    """A run produced NaN or infinity; the message names the step and σ."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' was asked for, but no CUDA GPU is available; use 'cpu' or 'auto'.")
    return torch.device(name)


def run_dtype(config: RunConfig) -> torch.dtype:
    """float64 for float64 runs and for the reference solver (always float64)."""
    if config.dtype == "float64" or get_solver(config.solver).family == "reference":
        return torch.float64
    return torch.float32


def _has_custom_rounding(denoiser: Denoiser) -> bool:
    return type(denoiser).round_sigma is not Denoiser.round_sigma


def make_plan(denoiser: Denoiser, config: RunConfig) -> Plan:
    rounding = denoiser.round_sigma if _has_custom_rounding(denoiser) else None
    return plan_run(config, (denoiser.sigma_min, denoiser.sigma_max), rounding)


def _labels(denoiser: Denoiser, config: RunConfig, batch: int, device: torch.device, dtype: torch.dtype) -> Optional[torch.Tensor]:
    if denoiser.label_dim <= 0:
        return None
    if config.label is None:
        return None
    if config.label >= denoiser.label_dim:
        raise ValueError(f"Class {config.label} is out of range: the denoiser has {denoiser.label_dim} classes.")
    labels = torch.zeros(batch, denoiser.label_dim, device=device, dtype=dtype)
    labels[:, config.label] = 1
    return labels


def _move(denoiser: Denoiser, device: torch.device, dtype: torch.dtype) -> Denoiser:
    tensors = list(denoiser.parameters()) + list(denoiser.buffers())
    if any(t.is_floating_point() and (t.dtype != dtype or t.device != device) for t in tensors):
        denoiser.to(device=device, dtype=dtype)
    return denoiser


def sample_steps(
    denoiser: Denoiser,
    config: RunConfig,
    noise: Optional[torch.Tensor] = None,
    record_evals: bool = True,
    plan: Optional[Plan] = None,
) -> Iterator[StepEvent]:
    """Run the configured solver, yielding the initial state then every step.

    Args:
        denoiser: the D(x; σ) to sample.
        config: the run configuration (solver, process, steps, seed, …).
        noise: ``[B, *shape]`` latents; by default drawn from ``config.seed``, sample k
            from seed + k, so sample k does not depend on the batch size.
        record_evals: keep the inputs of every D evaluation in the events.
        plan: a precomputed plan (else made from the config and the denoiser).
    """
    info = get_solver(config.solver)
    device, dtype = resolve_device(config.device), run_dtype(config)
    plan = plan or make_plan(denoiser, config)
    batch = config.batch if noise is None else noise.shape[0]
    streams = NoiseStreams(seeds_for(config.seed, batch))
    latents = streams.randn(denoiser.shape) if noise is None else noise
    if tuple(latents.shape[1:]) != tuple(denoiser.shape):
        raise ValueError(f"Noise of shape {tuple(latents.shape)} does not fit the denoiser's samples {tuple(denoiser.shape)}.")
    _move(denoiser, device, dtype)
    t0 = plan.t[0]
    x0 = latents.to(device=device, dtype=dtype) * float(plan.process.sigma(t0) * plan.process.s(t0))
    ctx = SolverContext(
        denoiser, plan, config, x0, streams.randn_like,
        labels=_labels(denoiser, config, batch, device, dtype),
        record_evals=record_evals,
        total_steps=None if info.adaptive and info.family != "reference" else plan.n_steps + (config.final == "denoise"),
    )
    first = ctx.event(0, t0, x0)
    first.noise = latents
    yield first
    last = first
    with torch.inference_mode():
        for event in info.fn(ctx):
            _check_finite(event)
            last = event
            yield event
        if config.final == "denoise":
            x = ctx.final_denoise(last.x, last.t)
            event = ctx.event(last.index + 1, 0.0, x, 1)
            _check_finite(event)
            yield event


def _check_finite(event: StepEvent) -> None:
    if not bool(torch.isfinite(event.x).all()):
        raise NonFiniteError(
            f"The run produced NaN or infinity at step {event.index} (σ = {event.sigma:.6g}); "
            "try float64, more steps or another solver."
        )


def sample(
    denoiser: Denoiser,
    config: RunConfig,
    noise: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[StepEvent], None]] = None,
    record_evals: bool = True,
    denoiser_id: Optional[str] = None,
) -> Trajectory:
    """Run to completion and return the whole :class:`Trajectory`."""
    recorder = TrajectoryRecorder(config, denoiser_id or getattr(denoiser, "name", "denoiser"), record_evals)
    for event in sample_steps(denoiser, config, noise, record_evals):
        recorder.add(event)
        if callback is not None:
            callback(event)
    return recorder.finish()
