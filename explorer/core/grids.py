"""Explicit time grids: a run's σ's given as a list instead of a discretization (issue #12).

A grid is σ_0 > σ_1 > … > σ_N (the last one may be 0: the run then ends with the usual
first-order step to σ = 0), optionally with the network timestep to use at each σ — for
discrete models whose sampler evaluates the network at a timestep that is not σ⁻¹(σ)
(diffusers' Karras grids call the model at rounded timesteps). Grids come from files
(``.json`` list or object, ``.npy``), from scheduler presets, from the step optimizer
and from published tables; they are stored in the run configuration, so every
trajectory file carries the exact grid it was made with.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from explorer.core.denoiser import Denoiser

PathLike = Union[str, Path]
GRID_FORMAT = "explorer-grid/1"
MAX_POINTS = 100_001


@dataclass(frozen=True)
class Grid:
    """σ's (float64, descending; the last may be 0), optional timesteps, and where they came from."""

    sigmas: tuple[float, ...]
    timesteps: Optional[tuple[float, ...]] = None
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", check_sigmas(self.sigmas, self.source or "the grid"))
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", check_timesteps(self.timesteps, self.sigmas, self.source or "the grid"))

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def to_json(self) -> str:
        data: dict[str, Any] = {"format": GRID_FORMAT, "sigmas": list(self.sigmas)}
        if self.timesteps is not None:
            data["timesteps"] = list(self.timesteps)
        if self.source:
            data["source"] = self.source
        if self.info:
            data["info"] = self.info
        return json.dumps(data, indent=1)


def check_sigmas(values: Sequence[Any], where: str = "the grid") -> tuple[float, ...]:
    """The σ's as floats, or a ValueError naming what is wrong with them."""
    try:
        sig = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"The σ's of {where} must be a list of numbers.") from None
    if len(sig) < 2:
        raise ValueError(f"{where} needs at least two σ's (one step); it has {len(sig)}.")
    if len(sig) > MAX_POINTS:
        raise ValueError(f"{where} has {len(sig)} σ's, more than the {MAX_POINTS} allowed.")
    if any(not math.isfinite(s) for s in sig) or any(s <= 0 for s in sig[:-1]) or sig[-1] < 0:
        raise ValueError(f"The σ's of {where} must be finite and positive (only the last may be 0).")
    if any(b >= a for a, b in zip(sig, sig[1:])):
        raise ValueError(f"The σ's of {where} must decrease strictly from the first to the last.")
    return sig


def check_timesteps(values: Sequence[Any], sigmas: Sequence[float], where: str = "the grid") -> tuple[float, ...]:
    """Timesteps: one per positive σ (the network is never called at σ = 0)."""
    try:
        ts = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"The timesteps of {where} must be a list of numbers.") from None
    positive = sum(1 for s in sigmas if s > 0)
    if len(ts) != positive:
        raise ValueError(f"{where} has {len(ts)} timesteps for {positive} positive σ's; give one per positive σ.")
    if any(not math.isfinite(t) or t < 0 for t in ts):
        raise ValueError(f"The timesteps of {where} must be finite and not negative.")
    return ts


def load_grid(path: PathLike) -> Grid:
    """Read a grid file: ``.json`` (a list of σ's, or an object with ``sigmas`` and optional
    ``timesteps``) or ``.npy`` (a 1-D array of σ's)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Grid file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path} is not a readable .npy array: {err}.") from None
        if arr.ndim != 1:
            raise ValueError(f"{path} must hold a 1-D array of σ's (its shape is {arr.shape}).")
        return Grid(tuple(arr.astype(np.float64).tolist()), source=str(path))
    if suffix != ".json":
        raise ValueError(f"A grid file must end in .json or .npy (got {path.name}).")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}.") from None
    if isinstance(data, list):
        return Grid(tuple(data), source=str(path))
    if not isinstance(data, dict) or "sigmas" not in data:
        raise ValueError(f"{path} must hold a list of σ's or an object with a 'sigmas' list.")
    ts = data.get("timesteps")
    return Grid(tuple(data["sigmas"]), None if ts is None else tuple(ts), data.get("source") or str(path),
                dict(data.get("info") or {}))


def save_grid(path: PathLike, grid: Grid) -> Path:
    """Write a grid as ``.json`` (σ's, timesteps, source) or ``.npy`` (σ's only)."""
    from explorer.core.files import atomic_write

    path = Path(path)
    if path.suffix.lower() == ".npy":
        atomic_write(path, lambda tmp: _write_npy(tmp, grid.sigmas))
    elif path.suffix.lower() == ".json":
        atomic_write(path, lambda tmp: Path(tmp).write_text(grid.to_json()))
    else:
        raise ValueError(f"A grid file must end in .json or .npy (got {path.name}).")
    return path


def _write_npy(path: str, values: Sequence[float]) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to a temporary name
        np.save(fh, np.asarray(values, dtype=np.float64))


def shifted(sigmas: Sequence[float], shift: float) -> tuple[float, ...]:
    """σ → shift·σ: SD3/FLUX's timestep shift t' = st/(1 + (s−1)t) in the σ(t) = t/(1−t) formalism."""
    if not (shift > 0 and math.isfinite(shift)):
        raise ValueError(f"The shift must be a positive number (got {shift!r}).")
    return tuple(shift * s for s in sigmas)


def dynamic_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                  base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """FLUX's resolution-dependent shift e^μ, μ linear in the number of latent patches.

    The defaults are those of FLUX.1's scheduler config (base 0.5 at 256 patches, 1.15 at 4096).
    """
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    mu = base_shift + slope * (image_seq_len - base_seq_len)
    return math.exp(mu)


# ------------------------------------------------------------------ timesteps pinned to σ's
class PinnedTimesteps(Denoiser):
    """A discrete-time denoiser that uses a grid's own timestep at each of the grid's σ's.

    Everything else (the ε/v → D conversion, the network) is the wrapped denoiser's; σ's
    that are not on the grid (none, for the solvers a preset chooses) fall back to its own
    σ → timestep rule.
    """

    def __init__(self, inner: Denoiser, sigmas: Sequence[float], timesteps: Sequence[float]) -> None:
        super().__init__()
        self.inner = inner
        for name in ("shape", "sigma_min", "sigma_max", "label_dim", "name", "data_range"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))
        pos = [s for s in sigmas if s > 0]
        self.table = (torch.tensor(pos, dtype=torch.float64), torch.tensor(list(timesteps), dtype=torch.float32))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        net = self.inner.net
        previous = getattr(net, "pinned", None)
        net.pinned = self.table
        try:
            return self.inner(x, sigma, labels)
        finally:
            net.pinned = previous


def pinned_timestep(table: tuple[torch.Tensor, torch.Tensor], sigma: torch.Tensor) -> Optional[torch.Tensor]:
    """The grid's timestep for each σ when every σ lies on the grid (relative 1e-6), else None."""
    sig_table, ts = table
    sigma = sigma.to(torch.float64).reshape(-1).cpu()
    rel = ((sigma.reshape(-1, 1) - sig_table.reshape(1, -1)).abs() / sig_table.reshape(1, -1))
    best, idx = rel.min(dim=1)
    if bool((best <= 1e-6).all()):
        return ts[idx]
    return None


def with_grid_timesteps(denoiser: Denoiser, config: Any) -> Denoiser:
    """The denoiser a run uses: pinned to the config's timesteps when it gives some."""
    if getattr(config, "timesteps", None) is None:
        return denoiser
    if not hasattr(getattr(denoiser, "net", None), "timestep"):
        raise ValueError("--timesteps applies to discrete-time (diffusers) models only; this denoiser takes σ itself.")
    return PinnedTimesteps(denoiser, config.sigmas, config.timesteps)


def validate_grid_fields(config: Any) -> None:
    """RunConfig's checks of the issue-#12 fields (a sentence per problem)."""
    for name in ("sigmas", "timesteps", "orders"):
        value = getattr(config, name)
        if value is not None and not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list (got {type(value).__name__} {value!r:.40}).")
    if config.sigmas is not None:
        check_sigmas(config.sigmas, "the run's σ grid")
    if config.timesteps is not None:
        if config.sigmas is None:
            raise ValueError("Timesteps need the σ grid they belong to (give sigmas as well).")
        check_timesteps(config.timesteps, config.sigmas, "the run's σ grid")
    if config.init_sigma is not None and not (config.init_sigma > 0 and math.isfinite(config.init_sigma)):
        raise ValueError(f"init_sigma must be a positive number (got {config.init_sigma!r}).")
    if config.orders is not None:
        if any(not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 3 for k in config.orders):
            raise ValueError(f"Step orders must be integers from 1 to 3 (got {list(config.orders)}).")
        if config.sigmas is not None and len(config.orders) != len(config.sigmas) - 1:
            raise ValueError(f"{len(config.orders)} step orders for a grid of {len(config.sigmas) - 1} steps.")
    if not (isinstance(config.shift, (int, float)) and config.shift > 0 and math.isfinite(config.shift)):
        raise ValueError(f"The shift must be a positive number (got {config.shift!r}).")
    if config.sigmas is not None and config.sigmas[-1] == 0 and config.final == "denoise":
        raise ValueError("final=denoise adds a step to σ = 0, but the σ grid already ends at 0.")


def explicit_plan(config: Any, info: Any, make_process: Any) -> Any:
    """The Plan of a run on the config's own σ grid: no discretization, no rounding to the
    model's σ table, no clamping (a preset may start above the denoiser's σ_max, as diffusers'
    Karras grids do)."""
    from explorer.core.solvers.context import Plan
    from explorer.core.solvers.rules import Fast

    if info.adaptive or isinstance(info.rule, Fast):
        raise ValueError(f"{info.name} chooses its own steps; an explicit σ grid applies to fixed-step solvers.")
    sig = shifted(config.sigmas, config.shift) if config.shift != 1 else tuple(config.sigmas)
    positive = [s for s in sig if s > 0]
    lo, hi = positive[-1], positive[0]
    if lo == hi:
        lo = hi * 0.5  # a one-step grid to σ = 0: any range below σ_0 builds the process
    process = make_process(config, (lo, hi))
    to_zero = sig[-1] == 0
    t = [float(process.sigma_inv(s)) for s in positive] + ([0.0] if to_zero else [])
    if any(not math.isfinite(v) for v in t) or any(b >= a for a, b in zip(t, t[1:])):
        raise ValueError("The σ grid gives no usable time steps for this process (σ⁻¹ is not finite or not decreasing).")
    steps = len(t) - 1
    final = "zero" if to_zero else ("denoise" if config.final == "denoise" else "sigma_min")
    orders = (list(config.orders) if config.orders is not None
              else info.step_orders(steps, config.lower_order_final, config.options))
    nfe = info.nfe(steps, to_zero, config.options)
    extra = 1 if final == "denoise" else 0
    return Plan(process, (lo, hi), t, orders, final, None if nfe is None else nfe + extra, "custom")


def shifted_times(t: list[float], process: Any, shift: float) -> list[float]:
    """A discretization's grid with σ → shift·σ (t = 0 stays 0)."""
    if shift == 1:
        return t
    return [float(process.sigma_inv(shift * process.sigma(v))) if v > 0 else 0.0 for v in t]


def initial_scale(plan: Any, config: Any) -> float:
    """x_0 = latents · this: σ(t_0)s(t_0) (EDM), or the preset's init_noise_sigma (diffusers
    starts VP-space schedulers from the latents themselves, whose std is 1, not σ̄(t_0))."""
    if config.init_sigma is not None:
        return float(config.init_sigma)
    t0 = plan.t[0]
    return float(plan.process.sigma(t0) * plan.process.s(t0))


def parse_timesteps(text: str) -> list[float]:
    """'999,749,499' or a .json list file → timesteps."""
    path = Path(text)
    if path.suffix.lower() in (".json", ".npy"):
        grid_like = load_grid(path) if path.suffix.lower() == ".npy" else None
        if grid_like is not None:
            return list(grid_like.sigmas)
        try:
            values = json.loads(path.read_text()) if path.exists() else None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}.") from None
        if values is None:
            raise FileNotFoundError(f"Timesteps file {path} does not exist.")
    else:
        values = [v for v in text.split(",") if v.strip()]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"Timesteps must be numbers separated by commas (got {text!r}).") from None


def grid_from_timesteps(denoiser: Denoiser, timesteps: Sequence[float]) -> Grid:
    """A discrete model's grid at the given timesteps: σ's from its training table, linear in
    t between entries (diffusers' rule), then σ = 0."""
    table = getattr(denoiser, "sigmas", None)
    if table is None or not hasattr(getattr(denoiser, "net", None), "timestep"):
        raise ValueError("--timesteps applies to discrete-time (diffusers) models only; use --sigmas for this one.")
    tab = np.asarray(table.to(torch.float64).cpu())
    ts = [float(t) for t in timesteps]
    if any(not 0 <= t <= len(tab) - 1 for t in ts):
        raise ValueError(f"Timesteps must lie between 0 and {len(tab) - 1} for this model.")
    sig = np.interp(ts, np.arange(len(tab)), tab).tolist()
    return Grid(tuple(sig) + (0.0,), tuple(ts), source="timesteps " + ",".join(f"{t:g}" for t in ts))


def grid_config_fields(grid: Grid) -> dict[str, Any]:
    """The RunConfig fields a grid file sets: its σ's, timesteps and label, and the run settings
    a preset stored with it (process, solver, starting scale, orders)."""
    fields: dict[str, Any] = dict(grid.info.get("run") or {})
    fields.update(sigmas=grid.sigmas, timesteps=grid.timesteps, schedule_label=grid.source or None)
    return fields
