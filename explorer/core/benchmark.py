"""Measuring the sampler: timers, memory readings, a profiler summary, and k-diffusion's samplers.

Used by ``diffusion-explorer bench``. GPU work is asynchronous, so every wall-clock reading
synchronizes the device before and after the timed region, and per-call device times come
from CUDA events around a loop of calls (median of several loops, after warm-up).
"""
from __future__ import annotations

import importlib
import importlib.util
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall_ms(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock milliseconds of ``fn()`` (device idle before, finished after), per repeat."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def per_call_ms(fn: Callable[[], Any], device: torch.device, target_ms: float = 40.0, loops: int = 5) -> float:
    """Median device milliseconds of one ``fn()`` from loops of back-to-back calls.

    The loop length is chosen so that one loop lasts about ``target_ms``; on CUDA the loop is
    timed with events, so launch gaps count only where the GPU really waits for them.
    """
    fn()
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    single = max((time.perf_counter() - start) * 1e3, 1e-3)
    calls = max(3, min(2000, int(target_ms / single)))
    results = []
    for _ in range(loops):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            results.append(begin.elapsed_time(end) / calls)
        else:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            results.append((time.perf_counter() - start) * 1e3 / calls)
    return statistics.median(results)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64 (inf where a is not finite)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


# ------------------------------------------------------------------------------ host memory

def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise ValueError(f"/proc/self/status has no {field} line.")


def rss_bytes() -> int:
    """Resident host memory of this process now (Linux)."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident host memory since the last :func:`reset_peak_rss` (Linux)."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------ profiler

def profile_summary(fn: Callable[[], Any], device: torch.device, rows: int = 15) -> tuple[dict, str]:
    """Profile one ``fn()``: where the device time goes, and how much of the wall time the GPU was busy.

    Returns numbers (wall ms, summed kernel ms on the device, busy fraction, copies ms) and the
    profiler's table of the top entries by device time.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    fn()
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        fn()
        synchronize(device)
        wall = (time.perf_counter() - start) * 1e3
    kernel_us = copy_us = 0.0
    kernels = 0
    for event in prof.events():
        if getattr(event, "device_type", None) != torch.autograd.DeviceType.CUDA:
            continue
        duration = event.time_range.elapsed_us()
        if "memcpy" in event.name.lower() or "memset" in event.name.lower():
            copy_us += duration
        else:
            kernel_us += duration
            kernels += 1
    table = _table(prof, device, rows)
    numbers = {
        "wall_ms": round(wall, 3),
        "device_kernel_ms": round(kernel_us / 1e3, 3),
        "device_kernels": kernels,
        "device_copy_ms": round(copy_us / 1e3, 3),
        "busy_fraction": round(kernel_us / 1e3 / wall, 4) if wall > 0 else None,
    }
    return numbers, table


def _table(prof: Any, device: torch.device, rows: int) -> str:
    """The profiler's summary table, by device time on a GPU (the key's name varies by version)."""
    keys = ("self_device_time_total", "self_cuda_time_total") if device.type == "cuda" else ("self_cpu_time_total",)
    for key in keys:
        try:
            return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=100)
        except (AttributeError, KeyError, ValueError):
            continue
    return prof.key_averages().table(row_limit=rows)


# ------------------------------------------------------------------------------ k-diffusion

_OPTIONAL_KDIFFUSION_DEPS = {
    # k_diffusion.sampling imports these at module level; heun and dpmpp_2m use none of them.
    "torchsde": (),
    "torchdiffeq": ("odeint",),
    "torchvision": (),
    "torchvision.transforms": (),
    "torchvision.transforms.functional": (),
}


def _unavailable_module(name: str) -> types.ModuleType:
    """A module that fails loudly when used (k-diffusion's samplers we time never touch it)."""
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so submodules can be registered below it

    def missing(*_: Any, **__: Any) -> Any:
        raise ImportError(f"{name} is not installed; this k-diffusion sampler needs it.")

    module.__getattr__ = lambda attr: missing  # type: ignore[attr-defined]
    return module


def load_k_diffusion_sampling() -> tuple[types.ModuleType, dict[str, Any]]:
    """``k_diffusion.sampling`` without running ``k_diffusion/__init__.py``.

    The package's ``__init__`` imports its training code (CLIP, kornia, wandb, clean-fid …);
    its sampling module needs only torch, scipy, tqdm and ``k_diffusion.utils``. Missing
    optional dependencies get modules that raise on use; they are listed in the returned info.
    """
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed (pip install k-diffusion, or carry its wheel).")
    stubbed = []
    for name, _ in _OPTIONAL_KDIFFUSION_DEPS.items():
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = _unavailable_module(name)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, sys.modules[name])
            stubbed.append(name)
    if "k_diffusion" not in sys.modules:
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = package
    sampling = importlib.import_module("k_diffusion.sampling")
    try:
        from importlib.metadata import version

        kd_version = version("k-diffusion")
    except Exception:  # noqa: BLE001 - a source checkout has no metadata
        kd_version = "unknown"
    return sampling, {"version": kd_version, "stubbed": stubbed, "path": str(Path(sampling.__file__).parent)}


K_DIFFUSION_SAMPLERS = {"heun": "sample_heun", "dpm-solver++2m": "sample_dpmpp_2m", "euler": "sample_euler",
                        "lms": "sample_lms"}


def k_diffusion_sampler(sampling: types.ModuleType, solver: str) -> Callable[..., torch.Tensor]:
    """k-diffusion's sampler for one of our solver names (ValueError where it has none)."""
    try:
        return getattr(sampling, K_DIFFUSION_SAMPLERS[solver])
    except KeyError:
        raise ValueError(f"k-diffusion has no sampler matching {solver!r}; "
                         f"compare one of {', '.join(K_DIFFUSION_SAMPLERS)}.") from None


def run_k_diffusion(sampler: Callable[..., torch.Tensor], model: Callable, noise: torch.Tensor,
                    sigmas: torch.Tensor) -> torch.Tensor:
    """One k-diffusion run from unit-variance ``noise`` on the σ's ``sigmas`` (ending in 0)."""
    with torch.inference_mode():
        return sampler(model, noise * sigmas[0].to(noise.device), sigmas, disable=True)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "device": device_name(device), "torch": torch.__version__, "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32, matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    else:
        info["threads"] = torch.get_num_threads()
    return info

