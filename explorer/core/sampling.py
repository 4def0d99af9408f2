"""Sampling: a generator of step events, and a call that runs to completion.

``sample_steps`` is the engine's one loop. It yields the initial state, then one
:class:`StepEvent` per step; the consumer cancels a run simply by not asking for the
next event (``close()``), so cancellation is honoured at every step. A NaN or infinity
stops the run with an error naming the step and σ.

With ``config.fast`` (the default) on a CUDA device the loop never waits for the GPU:
D is replayed from CUDA graphs (:mod:`explorer.core.fast`), and each step's finiteness
flag, and by default its tensors, travel to pinned host memory on a side stream
(:mod:`explorer.core.streaming`). Events are then handed out a step or two behind the
solver, their tensors already on the host, and a non-finite state is reported when its
event would have been handed out. Elsewhere, and with ``fast=False``, every step is checked
as it is made and events hold device tensors.
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterator, Optional

import torch

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.events import StepEvent
from explorer.core import fast as F
from explorer.core.grids import initial_scale, with_grid_timesteps
from explorer.core.fast import FastOptions, fast_denoiser, graphs_available, module_tensors
from explorer.core.guidance import guided, load_guide, needs_guide
from explorer.core.latents import NoiseStreams, seeds_for
from explorer.core.plan import plan_run
from explorer.core.solvers import SolverInfo, get_solver
from explorer.core.solvers.context import Plan, SolverContext
from explorer.core.streaming import HostCopy, HostStreamer, copy_helper, in_order
from explorer.core.trajectory import Trajectory, TrajectoryRecorder


class NonFiniteError(ValueError):
    """A run produced NaN or infinity; the message names the step and σ."""


def resolve_device(name: str) -> torch.device:
    """The torch device of a config's name; CUDA with its index, so that it compares equal to tensors' devices."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("Device 'cuda' was asked for, but no CUDA GPU is available; use 'cpu' or 'auto'.")
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def run_dtype(config: RunConfig) -> torch.dtype:
    """float64 for float64 runs and for the reference solver (always float64)."""
    if config.dtype == "float64" or get_solver(config.solver).float64:
        return torch.float64
    return torch.float32


def _has_custom_rounding(denoiser: Denoiser) -> bool:
    return type(denoiser).round_sigma is not Denoiser.round_sigma


def make_plan(denoiser: Denoiser, config: RunConfig) -> Plan:
    rounding = denoiser.round_sigma if _has_custom_rounding(denoiser) else None
    return plan_run(config, (denoiser.sigma_min, denoiser.sigma_max), rounding)


def _labels(
    denoiser: Denoiser, config: RunConfig, batch: int, device: torch.device, dtype: torch.dtype,
    classes: Optional[torch.Tensor] = None,
) -> Optional[torch.Tensor]:
    """One-hot ``[B, label_dim]`` rows of the run's class (or of per-sample ``classes``), None
    for an unconditional run (the network then gets the null label)."""
    if denoiser.label_dim <= 0:  # config.label of an unconditional model is ignored, as it always was
        if classes is not None:
            raise ValueError(f"{denoiser.name} is not class-conditional; it takes no class labels.")
        return None
    if classes is not None:
        classes = torch.as_tensor(classes, device=device).long().reshape(-1)
        if classes.shape[0] != batch:
            raise ValueError(f"{classes.shape[0]} class labels were given for a batch of {batch}.")
    elif config.label is None:
        return None
    else:
        classes = torch.full((batch,), config.label, dtype=torch.long, device=device)
    if bool(((classes < 0) | (classes >= denoiser.label_dim)).any()):
        raise ValueError(f"Class {int(classes.max())} is out of range: the denoiser has {denoiser.label_dim} classes.")
    return torch.nn.functional.one_hot(classes, denoiser.label_dim).to(dtype)


def guided_model(
    denoiser: Denoiser, config: RunConfig, device: torch.device, dtype: torch.dtype,
    fast: Optional[FastOptions] = None, guide: Optional[Denoiser] = None,
) -> Denoiser:
    """The D the solver calls: the denoiser (graph-replayed on the fast path), wrapped by the
    config's guidance (:mod:`explorer.core.guidance`); ``guide`` overrides loading ``config.guide``."""
    model = network_for(denoiser, config, device, fast)
    if guide is None and needs_guide(config.guidance, config.guide):
        guide = load_guide(config.guide, device)
    if guide is not None and config.guidance != 1.0:
        _move(guide, device, dtype)
        guide = network_for(guide, config, device, fast)
    return guided(model, config.guidance, guide if config.guidance != 1.0 else None)


def _move(denoiser: Denoiser, device: torch.device, dtype: torch.dtype) -> Denoiser:
    tensors = module_tensors(denoiser)
    if any(t.is_floating_point() and (t.dtype != dtype or t.device != device) for t in tensors):
        denoiser.to(device=device, dtype=dtype)
    return denoiser


def network_for(denoiser: Denoiser, config: RunConfig, device: torch.device,
                fast: Optional[FastOptions] = None) -> Denoiser:
    """The D a run calls: graph-replayed on CUDA's fast path, else the config's precision.

    On the fast path ``fast`` (the benchmark's choice) wins over the config's precision. Off it
    a float32 run calls the denoiser itself, and a bfloat16 one the cached variant whose network
    runs under autocast (contiguous layout: channels-last measured slower on the CPU, see
    ``diffusion-explorer bench --cpu-table``).
    """
    if config.fast and graphs_available(device):
        return fast_denoiser(denoiser, fast or FastOptions(precision=config.precision))
    if config.precision == "float32":
        return denoiser
    return fast_denoiser(denoiser, FastOptions(precision=config.precision))


def sample_steps(
    denoiser: Denoiser,
    config: RunConfig,
    noise: Optional[torch.Tensor] = None,
    record_evals: bool = True,
    plan: Optional[Plan] = None,
    fast: Optional[FastOptions] = None,
    to_host: Optional[bool] = None,
    lookahead: int = 2,
    labels: Optional[torch.Tensor] = None,
    guide: Optional[Denoiser] = None,
) -> Iterator[StepEvent]:
    """Run the configured solver, yielding the initial state then every step.

    Args:
        denoiser: the D(x; σ) to sample.
        config: the run configuration (solver, process, steps, seed, …).
        noise: ``[B, *shape]`` latents; by default drawn from ``config.seed``, sample k
            from seed + k, so sample k does not depend on the batch size.
        record_evals: keep the inputs of every D evaluation in the events.
        plan: a precomputed plan (else made from the config and the denoiser).
        fast: options of the CUDA fast path (precision, channels-last, compile), used when
            ``config.fast`` is on and the run is on a CUDA device (instead of the config's precision).
        to_host: hand out events whose tensors are already host copies (default: when the
            fast path is on). On the CPU there is nothing to copy.
        lookahead: how many steps the solver may run ahead of the events handed out.
        labels: per-sample class indices ``[B]`` for a class-conditional denoiser, instead of
            the one class ``config.label`` (the FD sweep draws every class in one batch).
        guide: the autoguidance guide as a denoiser, instead of loading ``config.guide``.
    """
    info = get_solver(config.solver)
    device, dtype = resolve_device(config.device), run_dtype(config)
    denoiser = with_grid_timesteps(denoiser, config)
    plan = plan or make_plan(denoiser, config)
    batch = config.batch if noise is None else noise.shape[0]
    streams = NoiseStreams(seeds_for(config.seed, batch))
    latents = streams.randn(denoiser.shape) if noise is None else noise
    if tuple(latents.shape[1:]) != tuple(denoiser.shape):
        raise ValueError(f"Noise of shape {tuple(latents.shape)} does not fit the denoiser's samples {tuple(denoiser.shape)}.")
    _move(denoiser, device, dtype)
    model = guided_model(denoiser, config, device, dtype, fast, guide)
    t0 = plan.t[0]
    x0 = latents.to(device=device, dtype=dtype) * initial_scale(plan, config)
    labels = _labels(denoiser, config, batch, device, dtype, labels)

    def context() -> SolverContext:
        return SolverContext(
            model, plan, config, x0, streams.randn_like, labels=labels, record_evals=record_evals,
            total_steps=None if not info.rule.fixed_grid else plan.n_steps + (config.final == "denoise"),
        )

    ctx = context()
    first = ctx.event(0, t0, x0)
    first.noise = latents
    if not config.fast:
        yield from _checked_as_made(info, ctx, first)
        return
    streamer = HostStreamer(device)
    host = device.type == "cuda" if to_host is None else to_host
    with torch.inference_mode():
        whole_steps = fast is None or fast.whole_steps
        graphed = _step_graph_events(info, context, first, host, lambda ev: _submit(streamer, ev, host)) if whole_steps else None
        helper = copy_helper() if host and device.type == "cuda" else None
        if graphed is not None:
            for (event, _), copies in in_order(graphed, lambda pair: pair[1], lookahead, helper):
                yield _delivered(event, copies, host)
            return
        for event, copies in in_order(_solver_events(info, ctx, first), lambda ev: _submit(streamer, ev, host), lookahead,
                                      helper):
            yield _delivered(event, copies, host)


def _step_graph_events(info: SolverInfo, context: Callable[[], SolverContext], first: StepEvent, host: bool,
                       submit: Callable[[StepEvent], HostCopy]) -> Optional[Iterator[tuple[StepEvent, HostCopy]]]:
    """(event, copies) of a run replayed from whole-step graphs, or None where this run stays eager.

    Applies on CUDA (and on the CPU with :data:`explorer.core.fast.STEP_TAPES_ON_CPU`, for tests) to
    runs whose steps are fixed tensor ops (:func:`explorer.core.fast.step_graphs_apply`). The first
    run at a grid is eager, the second captures every step (and hands its events out once all are
    captured: a step that cannot be captured sends the run back to the eager loop from its start),
    later runs replay.
    """
    ctx = context()
    device = ctx.x0.device
    if not (graphs_available(device) or (device.type == "cpu" and F.STEP_TAPES_ON_CPU)):
        return None
    if not F.step_graphs_apply(info, ctx.config):
        return None
    labels = None if ctx.labels is None else (tuple(ctx.labels.shape), ctx.labels.dtype)
    model = ctx.denoiser
    weights = getattr(model, "_fingerprint", None) or F._fingerprint(model)
    key = (id(model), weights, ctx.config.replace(seed=0), tuple(ctx.x0.shape),
           ctx.x0.dtype, device, labels, tuple(ctx.plan.t), ctx.record_evals, host)
    graphs = F.step_graphs_for(key, ctx.x0, host)
    if graphs is None:
        return None
    n_steps = ctx.plan.n_steps + (ctx.config.final == "denoise")
    if not graphs.steps:
        ctx.x0 = graphs.x0
        graphs.keep = [model, ctx.labels]  # tensors made outside the capture must outlive the graphs
        try:
            evals = max(info.evals_per_step, 1)
            captured = list(graphs.capture(_solver_events(info, ctx, first), n_steps, evals, skip_first=True))
        except Exception as err:  # noqa: BLE001 - a run that cannot be captured still runs
            warnings.warn(f"Whole-step capture of {info.name} failed ({err}); this grid runs eagerly.",
                          RuntimeWarning, stacklevel=4)
            F.forget_step_graphs(key)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return None
        return _chain([(first, submit(first))], captured)
    return _chain([(first, submit(first))], graphs.replay(first.x))


def _chain(head: list, tail: Iterator) -> Iterator:
    yield from head
    yield from tail


def _solver_events(info: SolverInfo, ctx: SolverContext, first: StepEvent) -> Iterator[StepEvent]:
    """The initial event, every solver step, and the extra step of final=denoise."""
    yield first
    last = first
    for event in info.fn(ctx):
        last = event
        yield event
    if ctx.config.final == "denoise":
        x = ctx.final_denoise(last.x, last.t)
        yield ctx.event(last.index + 1, 0.0, x, 1)


def _checked_as_made(info: SolverInfo, ctx: SolverContext, first: StepEvent) -> Iterator[StepEvent]:
    """The plain loop: each state is checked for NaN as soon as it exists (a host sync per step)."""
    events = _solver_events(info, ctx, first)
    yield next(events)
    with torch.inference_mode():
        for event in events:
            _check_finite(event)
            yield event


def _submit(streamer: HostStreamer, event: StepEvent, host: bool) -> HostCopy:
    """Queue the copies of one event: its finiteness flag, and its tensors when ``host``."""
    flag = None if event.index == 0 else torch.isfinite(event.x).all()
    tensors = [event.x, event.denoised, event.noise, *event.eval_x] if host else []
    return streamer.submit([flag, *tensors])


def _delivered(event: StepEvent, copies: list, host: bool) -> StepEvent:
    """The event with its host tensors, or NonFiniteError if its state was not finite."""
    flag = copies[0]
    if flag is not None and not bool(flag):
        raise NonFiniteError(_non_finite_message(event))
    if host:
        event.x, event.denoised, event.noise = copies[1], copies[2], copies[3]
        event.eval_x = list(copies[4:])
    return event


def _check_finite(event: StepEvent) -> None:
    if not bool(torch.isfinite(event.x).all()):
        raise NonFiniteError(_non_finite_message(event))


def _non_finite_message(event: StepEvent) -> str:
    return (f"The run produced NaN or infinity at step {event.index} (σ = {event.sigma:.6g}); "
            "try float64, more steps or another solver.")


def final_samples(
    denoiser: Denoiser,
    config: RunConfig,
    noise: Optional[torch.Tensor] = None,
    fast: Optional[FastOptions] = None,
    labels: Optional[torch.Tensor] = None,
    guide: Optional[Denoiser] = None,
) -> torch.Tensor:
    """Run to completion keeping only the final samples ``x_N / s(t_N)``, on the run's device.

    Intermediate states are dropped as they pass, so memory stays at one batch whatever
    the number of steps (FD, ``generate``, preview grids).
    """
    last = None
    for last in sample_steps(denoiser, config, noise=noise, record_evals=False, fast=fast, to_host=False,
                             labels=labels, guide=guide):
        pass
    return last.x / last.scale


def sample(
    denoiser: Denoiser,
    config: RunConfig,
    noise: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[StepEvent], None]] = None,
    record_evals: bool = True,
    denoiser_id: Optional[str] = None,
) -> Trajectory:
    """Run to completion and return the whole :class:`Trajectory`."""
    recorder = TrajectoryRecorder(config, denoiser_id or getattr(denoiser, "name", "denoiser"), record_evals,
                                  data_range=getattr(denoiser, "data_range", None))
    for event in sample_steps(denoiser, config, noise, record_evals):
        recorder.add(event)
        if callback is not None:
            callback(event)
    return recorder.finish()
