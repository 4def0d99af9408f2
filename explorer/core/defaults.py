"""The app's default run, defined once: the GUI, the README's figures and the CPU benchmark use it.

Why these choices (the CPU table: ``diffusion-explorer bench --cpu-table``, results in
``benchmarks/results/bench-cpu-*.md``; FD from the shipped card ``checkpoints/fashion32-edm.md``):

- **DPM-Solver++(2M), 12 steps = 12 NFE** instead of Heun at 35: on the shipped Fashion-MNIST
  model (the 4.5 M-image release) its FD is 1.89 against Heun-35's 1.81 (+4 %, inside the 10 % the
  default may lose; at 10 NFE it is 2.26, +25 %), for 12/35 of the network evaluations
  (``benchmarks/results/train-h200-2026-12-01``); its first x₀ arrives after one evaluation where
  Heun needs two.
- **bfloat16 network on CPUs with native bf16 arithmetic** (AVX512-BF16 or AMX): oneDNN's bf16
  convolutions are the faster ones there (channels-last and ``jit.freeze`` measured no better);
  the state, the solver's coefficients and the preconditioning stay float32 (the default run's
  final samples move by a relative 4e-3). Elsewhere, and on
  CUDA (fast anyway, and float32 there is bit-identical to the eager run), the network stays
  float32: emulated bf16 is slower, not faster.
- **batch 16** for images (a 4×4 grid), 64 for other shapes and 512 for 2-D toys (a cloud).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser

DEFAULT_SOLVER = "dpm-solver++2m"
DEFAULT_NFE = 12
# What the default was before issue #14 (Heun, 18 steps = 35 NFE): the benchmark's baseline.
LEGACY_SOLVER, LEGACY_STEPS = "heun", 18


def default_batch(denoiser: Denoiser) -> int:
    """A first batch that shows something: a cloud for 2-D toys, a grid for images."""
    if tuple(denoiser.shape) == (2,):
        return 512
    return 16 if denoiser.is_image else 64


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision(device: str = "auto") -> str:
    """bfloat16 for the network on a CPU run where the CPU has native bf16, float32 otherwise."""
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return "bfloat16" if on_cpu and cpu_has_native_bf16() and torch.backends.mkldnn.is_available() else "float32"


def default_run_config(denoiser: Denoiser, device: str = "auto") -> RunConfig:
    """The run the app starts with for ``denoiser`` (see the module docstring for why)."""
    precision = default_precision(device) if denoiser.is_image else "float32"
    # DPM-Solver++(2M) spends one evaluation per step, so 12 steps are 12 NFE (the panel stays in steps mode).
    return RunConfig(solver=DEFAULT_SOLVER, steps=DEFAULT_NFE, batch=default_batch(denoiser),
                     precision=precision, device=device)


def legacy_run_config(denoiser: Denoiser, device: str = "auto") -> RunConfig:
    """The default before issue #14 (Heun, 35 NFE, float32): the benchmark compares against it."""
    return RunConfig(solver=LEGACY_SOLVER, steps=LEGACY_STEPS, batch=default_batch(denoiser), device=device)


def cpu_threads(cores: int | None = None, load: float | None = None) -> int:
    """Threads for torch on a CPU run: all cores when the machine is idle, fewer when it is busy.

    With other processes on every core, a second OpenMP thread spends its time waiting at the
    barriers of each kernel: on this project's busy 2-core machine (load 11–12) one D took
    5.9 s with two threads and 1.0 s with one (the CPU table). A caller that owns the process
    (the app's worker, a CLI run) may ``torch.set_num_threads(cpu_threads())`` before a run.
    """
    import os

    cores = cores or os.cpu_count() or 1
    load = os.getloadavg()[0] if load is None else load
    return max(1, min(cores, int(cores - load + 0.5)))
