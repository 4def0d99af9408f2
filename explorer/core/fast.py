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
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from explorer.core.denoiser import Denoiser
from explorer.core.precond import Preconditioner

PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class FastOptions:
    """How the fast path evaluates D (see the module docstring)."""

    precision: str = "float32"
    channels_last: bool = False
    compile: bool = False
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
    """Where the weights live and how often they were changed in place (EMA updates, loads)."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in module_tensors(module))


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
        if not x.is_cuda or source.training or torch.is_grad_enabled():
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
    options = options or FastOptions()
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
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
