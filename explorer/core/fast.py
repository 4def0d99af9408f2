"""The GPU fast path: D(x; σ) replayed as a CUDA graph.

A small U-Net at batch 1–16 launches a few hundred short kernels per evaluation; launched one
by one from Python, the GPU spends most of its time waiting for the next launch. A CUDA graph
records the launches once and replays them with one call. :class:`GraphedDenoiser` keeps one
graph per (batch, sample shape, dtype, device, labels) and feeds it through static input
buffers: the state, σ as a ``[B]`` device tensor and the labels are copied in on the device,
the output is copied out, so nothing waits on the host and every call returns a fresh tensor
(multistep solvers keep old outputs).

Options (:class:`FastOptions`): ``precision="bfloat16"`` runs the preconditioner's network F
under bf16 autocast while the preconditioning (c_skip, c_out, c_in, c_noise and the skip sum)
stays float32; ``channels_last`` feeds F a channels-last copy of its weights and input;
``compile`` passes F through ``torch.compile`` before capture. float32 without channels-last
or compile replays exactly the kernels of the eager call, so its results agree with the eager
path to rounding. The benchmark (``diffusion-explorer bench``) measures which options win.

On a CPU, or for a module in training mode, or with gradients enabled, the wrapper simply
calls the denoiser: graphs are a CUDA feature and a training module must see fresh dropout.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from explorer.core.denoiser import Denoiser
from explorer.core.precond import Preconditioner

PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class FastOptions:
    """How the fast path evaluates D (see the module docstring)."""

    precision: str = "float32"
    channels_last: bool = False
    compile: bool = False
    whole_steps: bool = True  # capture whole solver steps where the run allows it (see StepGraphs)
    warmup: int = 2  # eager calls before capture: cuDNN/cuBLAS handles and lazy init happen there

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"Unknown fast-path precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}.")
        if not (isinstance(self.warmup, int) and self.warmup >= 1):
            raise ValueError(f"The fast path needs at least one warm-up call (got {self.warmup!r}).")

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        return torch.bfloat16 if self.precision == "bfloat16" else None


def graphs_available(device: torch.device | str) -> bool:
    """CUDA graphs need a CUDA device; everywhere else the eager path runs."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


class NetworkCast(torch.nn.Module):
    """Runs a network F under autocast and/or channels-last, returning float32 contiguous output.

    Only F is wrapped: the preconditioner around it keeps computing its coefficients and the
    skip connection in the run's dtype.
    """

    def __init__(self, net: torch.nn.Module, autocast_dtype: Optional[torch.dtype], channels_last: bool) -> None:
        super().__init__()
        self.net = net
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        dtype = x.dtype
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            out = self.net(x, *args, **kwargs)
        else:
            with torch.autocast(x.device.type, dtype=self.autocast_dtype):
                out = self.net(x, *args, **kwargs)
        return out.to(dtype=dtype, memory_format=torch.contiguous_format)


def network_variant(denoiser: Denoiser, options: FastOptions) -> Denoiser:
    """The denoiser as the options ask: the same object, or a shallow copy whose F is wrapped.

    The copy shares the preconditioner's buffers and (unless channels-last asks for a copy in
    that layout) F's weights, so the user's module is never changed.
    """
    plain = options.autocast_dtype is None and not options.channels_last and not options.compile
    if plain or not isinstance(denoiser, Preconditioner):
        return denoiser
    net = denoiser.model
    if options.channels_last:
        net = copy.deepcopy(net).to(memory_format=torch.channels_last)
    if options.compile:
        net = torch.compile(net, dynamic=False)
    variant = copy.copy(denoiser)
    variant._modules = dict(denoiser._modules)
    variant._modules["model"] = NetworkCast(net, options.autocast_dtype, options.channels_last)
    return variant


def module_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of ``module`` and its submodules (one cheap walk, once per run)."""
    tensors: list[torch.Tensor] = []
    for m in module.modules():
        tensors.extend(t for t in m._parameters.values() if t is not None)
        tensors.extend(t for t in m._buffers.values() if t is not None)
    return tensors


def _fingerprint(module: torch.nn.Module) -> tuple:
    """Where the weights live and how often they were changed in place (EMA updates, loads).

    Tensors made under ``torch.inference_mode`` (a model loaded inside it) keep no version counter;
    for them only the storage, dtype and device count: a new load or ``.to()`` still changes those.
    """
    return tuple((t.data_ptr(), -1 if t.is_inference() else t._version, t.dtype, t.device) for t in module_tensors(module))


@dataclass
class CapturedGraph:
    """One captured evaluation: static inputs, the graph, and its output buffer."""

    graph: "torch.cuda.CUDAGraph"
    x: torch.Tensor
    sigma: torch.Tensor
    labels: Optional[torch.Tensor]
    out: torch.Tensor

    def __call__(self, x: torch.Tensor, sigma: Any, labels: Optional[torch.Tensor]) -> torch.Tensor:
        self.x.copy_(x)
        if isinstance(sigma, torch.Tensor):
            self.sigma.copy_(sigma)
        else:
            self.sigma.fill_(float(sigma))
        if self.labels is not None:
            self.labels.copy_(labels)
        self.graph.replay()
        return self.out.clone()

    def replay(self) -> None:
        """Replay on whatever the static inputs hold (the benchmark's floor)."""
        self.graph.replay()


_EAGER = object()  # a key whose capture failed: that shape runs eagerly from then on


class GraphedDenoiser(Denoiser):
    """D(x; σ) of another denoiser, replayed from CUDA graphs (see the module docstring).

    It refers to the wrapped denoiser weakly, so a cached wrapper never keeps a model alive.
    """

    def __init__(self, denoiser: Denoiser, options: Optional[FastOptions] = None) -> None:
        super().__init__()
        self.options = options or FastOptions()
        for name in ("shape", "sigma_min", "sigma_max", "label_dim", "data_range", "name"):
            setattr(self, name, getattr(denoiser, name))
        self._source = weakref.ref(denoiser)
        self._graphs: dict[tuple, Any] = {}
        self._pool: Any = None
        self._variant: Optional[Callable[[], Denoiser]] = None
        self._fingerprint: tuple = ()
        self.refresh()

    # ------------------------------------------------------------------ bookkeeping
    def source(self) -> Denoiser:
        denoiser = self._source()
        if denoiser is None:
            raise RuntimeError("The denoiser behind this fast path no longer exists.")
        return denoiser

    def refresh(self) -> None:
        """Drop graphs (and copies of weights) that no longer match the wrapped denoiser."""
        source = self.source()
        current = _fingerprint(source)
        if current == self._fingerprint and self._variant is not None:
            return
        self._graphs.clear()
        self._pool = None
        variant = network_variant(source, self.options)
        self._variant = self._source if variant is source else (lambda v=variant: v)
        self._fingerprint = current

    @property
    def captured(self) -> int:
        """Number of graphs held (for tests and the benchmark)."""
        return sum(1 for g in self._graphs.values() if g is not _EAGER)

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.source().round_sigma(sigma)

    # ------------------------------------------------------------------ evaluation
    def eager(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """D with the fast path's options but without a graph (what each graph replays)."""
        return self._variant()(x, sigma, labels)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        source = self.source()
        if not x.is_cuda or source.training or torch.is_grad_enabled() or torch.cuda.is_current_stream_capturing():
            return self.eager(x, sigma, labels)
        if not torch.is_inference_mode_enabled():  # the static buffers are inference tensors
            with torch.inference_mode():
                return self.forward(x, sigma, labels)
        graph = self.graph(x, sigma, labels)
        if graph is None:
            return self.eager(x, sigma, labels)
        return graph(x, sigma, labels)

    def graph(self, x: torch.Tensor, sigma: Any, labels: Optional[torch.Tensor] = None) -> Optional["CapturedGraph"]:
        """The graph for inputs like these (captured on first use), or None where capture failed."""
        key = (tuple(x.shape), x.dtype, x.device, None if labels is None else (tuple(labels.shape), labels.dtype))
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._capture(x, sigma, labels)
        return None if graph is _EAGER else graph

    def _capture(self, x: torch.Tensor, sigma: Any, labels: Optional[torch.Tensor]) -> Any:
        static_x = x.detach().clone()
        static_sigma = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
        static_sigma.copy_(torch.as_tensor(sigma, dtype=x.dtype, device=x.device))
        static_labels = None if labels is None else labels.detach().clone()
        stream = torch.cuda.current_stream(x.device)
        side = torch.cuda.Stream(x.device)
        side.wait_stream(stream)
        try:
            with torch.cuda.stream(side):
                for _ in range(self.options.warmup):
                    self.eager(static_x, static_sigma, static_labels)
            stream.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.stream(stream):  # gives the caller its stream back even after a failed capture
                with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                    out = self.eager(static_x, static_sigma, static_labels)
        except Exception as err:  # noqa: BLE001 - any network that cannot be captured still runs
            warnings.warn(f"CUDA graph capture failed for {self.name} at batch {x.shape[0]} ({err}); "
                          "running this shape eagerly.", RuntimeWarning, stacklevel=3)
            torch.cuda.synchronize(x.device)
            return _EAGER
        self._pool = graph.pool()
        return CapturedGraph(graph, static_x, static_sigma, static_labels, out)


_CACHE: dict[tuple[int, FastOptions], GraphedDenoiser] = {}


def fast_denoiser(denoiser: Denoiser, options: Optional[FastOptions] = None) -> GraphedDenoiser:
    """The cached fast wrapper of ``denoiser`` (graphs survive from run to run).

    Called once per run: it also notices moved or updated weights and recaptures then.
    """
    options = dataclasses.replace(options or FastOptions(), whole_steps=True)  # D's graphs do not depend on it
    if isinstance(denoiser, GraphedDenoiser):
        denoiser = denoiser.source()
    key = (id(denoiser), options)
    wrapper = _CACHE.get(key)
    if wrapper is None or wrapper._source() is not denoiser:
        wrapper = _CACHE[key] = GraphedDenoiser(denoiser, options)
        weakref.finalize(denoiser, _CACHE.pop, key, None)
    else:
        wrapper.refresh()
    return wrapper


def release_graphs() -> None:
    """Forget every captured graph (their memory pools go back to the allocator's cache).

    The wrappers stay, with their variants of the network (a compiled one is not compiled again).
    """
    for wrapper in _CACHE.values():
        wrapper._graphs.clear()
        wrapper._pool = None
    _RUNS.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Whole runs as graphs: every step of a fixed-grid run captured once, replayed in order.
#
# A solver step here is Python that computes float coefficients and launches a few tensor ops
# around D. At batch 1 that Python costs as much as the network, so replaying D alone still
# leaves the GPU waiting between evaluations. For a run whose steps are a fixed sequence of
# tensor ops (no noise drawn, no step-size control, no host reads), the whole step — D, the
# update, the finiteness flag and the copies of the step's tensors to pinned host memory — is
# captured as one graph per step; the steps' graphs share one memory pool, which is safe because
# they are always replayed in the order they were captured. A run is then N ``replay()`` calls.
#
# The first run at a grid runs eagerly (it warms cuDNN/cuBLAS up); the second captures its
# steps while it runs (each step is replayed right after its capture, so it yields real
# results); later runs replay. A capture that fails leaves that grid eager for good.
#
# The capture is a backend: CUDA graphs on a GPU, and on the CPU an op tape (:class:`OpTape`)
# that records the aten calls of a step and replays them on the same tensors, with the same
# fixed-address semantics, so the logic is tested without a GPU.
# ---------------------------------------------------------------------------------------------

def step_graphs_apply(info: Any, config: Any) -> bool:
    """Whether every step of this run is a fixed sequence of tensor ops (so it can be captured).

    A solver may declare it (``SolverInfo.fixed_step_ops``); otherwise it follows from what the
    registry declares: deterministic, not adaptive, and no churn in this run (churn draws noise
    and rounds σ on the host).
    """
    declared = getattr(info, "fixed_step_ops", None)
    if declared is not None:
        return bool(declared) and config.churn == 0
    return not (info.stochastic or info.adaptive or info.float64) and config.churn == 0


class OpTape(TorchDispatchMode):
    """A CPU stand-in for a CUDA graph: the aten calls of a region, replayed on the same tensors.

    Like a graph it keeps every tensor the region made (so their addresses stay fixed), bakes in
    every Python number, and refuses random ops and reading back what the region computed
    (``.item()`` of a result: a device sync inside a capture). Host arithmetic on 0-dim tensors
    that the region did not compute (a solver's float64 coefficients) runs once and is not
    recorded, as on a GPU, where it never reaches the stream. Replaying recomputes each
    recorded op from its recorded inputs and writes the result into the recorded output.
    """

    _RANDOM = ("normal", "uniform", "rand", "bernoulli", "multinomial", "exponential")
    _READS = ("_local_scalar_dense", "item")

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple, dict, Any]] = []
        self._made: set[int] = set()  # storages the recorded ops wrote

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        computed = any(t.untyped_storage().data_ptr() in self._made for t in tensors)
        if name.startswith(self._RANDOM):
            raise RuntimeError(f"{func} draws noise: a captured step cannot contain it.")
        if name.startswith(self._READS):
            if computed:
                raise RuntimeError(f"{func} reads a result back to the host: a captured step cannot contain it.")
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        host_math = not computed and all(t.ndim == 0 for t in tensors) and not _has_array(out)
        if not host_math:
            self.ops.append((func, args, kwargs, out))
            for t in torch.utils._pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self._made.add(t.untyped_storage().data_ptr())
        return out

    def replay(self) -> None:
        for func, args, kwargs, out in self.ops:
            _write_into(out, func(*args, **kwargs))


def _has_array(out: Any) -> bool:
    return any(isinstance(t, torch.Tensor) and t.ndim > 0 for t in torch.utils._pytree.tree_leaves(out))


def _write_into(recorded: Any, fresh: Any) -> None:
    """Copy a replayed op's result into the tensor the capture recorded (views and in-place ops alias already)."""
    if isinstance(recorded, torch.Tensor):
        if isinstance(fresh, torch.Tensor) and not (
                fresh.data_ptr() == recorded.data_ptr() and fresh.storage_offset() == recorded.storage_offset()):
            recorded.copy_(fresh)
    elif isinstance(recorded, (tuple, list)):
        for r, f in zip(recorded, fresh):
            _write_into(r, f)


class _TapeBackend:
    """Captures regions as :class:`OpTape` s (CPU tests of the step-graph logic)."""

    def capture(self, fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        tape = OpTape()
        with tape:
            out = fn()
        tape.replay()  # capture only records on a GPU; replay now so the first result is computed the same way
        return tape.replay, out

    def done(self) -> Optional[Any]:
        return None


class _CudaBackend:
    """Captures regions as CUDA graphs sharing one memory pool (replayed in capture order)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.pool: Any = None

    def capture(self, fn: Callable[[], Any]) -> tuple[Callable[[], None], Any]:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(stream):
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
                out = fn()
        self.pool = graph.pool()
        graph.replay()
        return graph.replay, out

    def done(self) -> Optional[Any]:
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event


@dataclass
class _StepRecord:
    """What a captured step hands out: the event's numbers, and the step's host slots."""

    replay: Callable[[], None]
    meta: dict[str, Any]
    slots: list[Optional[torch.Tensor]]  # [finite flag, x, denoised, noise, *eval_x] on the host (pinned on CUDA)
    device_x: torch.Tensor  # the step's state and x₀ on the device (static), for runs that stay there
    device_denoised: Optional[torch.Tensor]
    device_evals: list[torch.Tensor]


class StepGraphs:
    """One fixed-grid run captured step by step (see the comment above :func:`step_graphs_apply`)."""

    def __init__(self, backend: Any, x0: torch.Tensor, host: bool) -> None:
        self.backend = backend
        self.x0 = x0  # the static initial state every replay starts from
        self.host = host
        self.steps: list[_StepRecord] = []
        self.keep: list[Any] = []  # what the graphs read that was made outside them (labels, the model)

    def capture(self, events: Iterator[Any], n_steps: int, evals_per_step: int,
                skip_first: bool = False) -> Iterator[tuple[Any, Any]]:
        """Capture and run the ``n_steps`` steps of ``events`` (after its initial event with ``skip_first``).

        Host slots are allocated before each capture (page-locking cannot happen inside one):
        the flag, x, x₀ and up to ``evals_per_step`` evaluation inputs.
        """
        if skip_first:
            next(events)
        for _ in range(n_steps):
            slots = self._slots(evals_per_step)
            replay, event = self.backend.capture(lambda: self._step(events, slots))
            slots = slots[:4 + len(event.eval_x)] if self.host else slots[:1]
            if self.host and event.denoised is None:
                slots[2] = None
            record = _StepRecord(replay, _meta(event), slots, event.x, event.denoised, list(event.eval_x))
            self.steps.append(record)
            yield self._handout(record)

    def _slots(self, evals: int) -> list[Optional[torch.Tensor]]:
        flag = _host_slot(torch.empty((), dtype=torch.bool, device=self.x0.device))
        if not self.host:
            return [flag]
        return [flag, _host_slot(self.x0), _host_slot(self.x0), None] + [_host_slot(self.x0) for _ in range(evals)]

    def _step(self, events: Iterator[Any], slots: list[Optional[torch.Tensor]]) -> Any:
        event = next(events)
        tensors = [torch.isfinite(event.x).all()]
        if self.host:
            if len(event.eval_x) > len(slots) - 4:
                raise RuntimeError(f"step {event.index} evaluated D {len(event.eval_x)} times, more than the "
                                   f"{len(slots) - 4} the solver declares")
            tensors += [event.x, event.denoised, None, *event.eval_x]
        for slot, t in zip(slots, tensors):
            if slot is not None and t is not None:
                slot.copy_(t, non_blocking=True)
        return event

    def replay(self, x0: torch.Tensor) -> Iterator[tuple[Any, Any]]:
        """The run again from a new initial state: one replay per step, no Python solver code."""
        self.x0.copy_(x0)
        for record in self.steps:
            record.replay()
            yield self._handout(record)

    def _handout(self, record: _StepRecord) -> tuple[Any, Any]:
        from explorer.core.events import StepEvent
        from explorer.core.streaming import HostCopy

        done = self.backend.done()
        copies = HostCopy(list(record.slots), done, copy_out=True)
        if self.host:  # the tensors arrive with the copies
            return StepEvent(x=record.device_x, denoised=None, **record.meta), copies
        # the state stays on the device (copied: the next replay rewrites the static one); only the flag travels
        denoised = None if record.device_denoised is None else record.device_denoised.clone()
        return StepEvent(x=record.device_x.clone(), denoised=denoised, eval_x=[e.clone() for e in record.device_evals],
                         **record.meta), copies


def _meta(event: Any) -> dict[str, Any]:
    return {"index": event.index, "t": event.t, "sigma": event.sigma, "scale": event.scale, "nfe": event.nfe,
            "total_steps": event.total_steps, "eval_sigma": list(event.eval_sigma), "order": event.order}


def _host_slot(t: torch.Tensor) -> torch.Tensor:
    """Where a captured step copies one tensor: pinned host memory on CUDA, a CPU tensor otherwise."""
    if t.is_cuda:
        return torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return torch.empty_like(t)


STEP_TAPES_ON_CPU = False  # tests turn this on: CPU runs then go through OpTape "graphs"
_RUNS: "OrderedDict[tuple, Any]" = OrderedDict()
_RUNS_KEPT = 8  # captured runs kept (their pools hold a few batches' worth of device memory each)


def step_graphs_for(key: tuple, x0: torch.Tensor, host: bool, backend: Optional[Any] = None) -> Optional[StepGraphs]:
    """The captured run for ``key``, None on the first sight of the key (that run stays eager).

    On the second sight a fresh :class:`StepGraphs` (no steps yet) is returned: the caller
    captures into it. A key whose capture failed returns None for good.
    """
    entry = _RUNS.get(key)
    if entry is None:
        _RUNS[key] = "seen"
        while len(_RUNS) > _RUNS_KEPT:
            _RUNS.popitem(last=False)
        return None
    _RUNS.move_to_end(key)
    if entry is _EAGER:
        return None
    if entry == "seen":
        backend = backend or (_CudaBackend(x0.device) if x0.is_cuda else _TapeBackend())
        entry = _RUNS[key] = StepGraphs(backend, x0.clone(), host)
    return entry


def forget_step_graphs(key: tuple) -> None:
    """Mark a key whose capture failed: its runs stay eager."""
    _RUNS[key] = _EAGER
