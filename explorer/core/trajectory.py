"""A finished run, and its file (SPEC §6): ``.safetensors`` (or ``.npz``).

Tensors: ``t``, ``sigma``, ``scale`` ``[S]``; ``x`` ``[S, B, *shape]`` (S states, the
process's scaled space); ``denoised`` ``[S−1, B, *shape]`` (x₀ of each step); ``noise``
``[B, *shape]``; and, when recorded, ``eval_sigma`` ``[E]``, ``eval_x`` ``[E, B, *shape]``
and ``eval_step`` ``[E]`` (the step each evaluation belongs to). The metadata holds the
JSON of the run configuration, the denoiser id, seed, library version and NFE.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from explorer.core.config import RunConfig
from explorer.core.files import atomic_write, canonical_safetensors
from explorer.core.events import StepEvent

FORMAT = "explorer-trajectory/1"


@dataclass
class Trajectory:
    """Every state of a run, on the CPU."""

    config: RunConfig
    denoiser_id: str
    t: torch.Tensor
    sigma: torch.Tensor
    scale: torch.Tensor
    x: torch.Tensor
    denoised: torch.Tensor
    noise: torch.Tensor
    nfe: int
    eval_sigma: Optional[torch.Tensor] = None
    eval_x: Optional[torch.Tensor] = None
    eval_step: Optional[torch.Tensor] = None
    extra: dict[str, Any] = field(default_factory=dict)
    data_range: Optional[tuple[float, float]] = None  # the model's data range, stored so exports need no model

    @property
    def samples(self) -> torch.Tensor:
        """Final samples in data space: x_N / s(t_N)."""
        return self.x[-1] / self.scale[-1]

    @property
    def num_steps(self) -> int:
        return self.x.shape[0] - 1

    def metadata(self) -> dict[str, str]:
        from explorer import __version__

        return {
            "format": FORMAT,
            "config": self.config.to_json(),
            "denoiser": self.denoiser_id,
            "seed": str(self.config.seed),
            "version": __version__,
            "nfe": str(self.nfe),
            "extra": json.dumps(self.extra),
            **({"data_range": json.dumps([float(v) for v in self.data_range])} if self.data_range else {}),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            "t": self.t, "sigma": self.sigma, "scale": self.scale, "x": self.x,
            "denoised": self.denoised, "noise": self.noise,
        }
        if self.eval_sigma is not None:
            out["eval_sigma"] = self.eval_sigma
            out["eval_step"] = self.eval_step if self.eval_step is not None else torch.zeros(len(self.eval_sigma), dtype=torch.int64)
        if self.eval_x is not None:
            out["eval_x"] = self.eval_x
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``.safetensors`` or ``.npz`` (by suffix) atomically: temp file, then rename."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".safetensors", ".npz"):
            raise ValueError(f"Trajectory files end in .safetensors or .npz, not {path.name!r}.")
        tensors = self.tensors()
        meta = self.metadata()
        return atomic_write(path, lambda tmp: _write(tmp, suffix, tensors, meta))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Trajectory":
        """Read a trajectory file; every field's type and every tensor's shape is checked (ValueError)."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Trajectory file {str(path)!r} does not exist.")
        tensors, meta = _read(path)
        if meta.get("format", FORMAT) != FORMAT:
            raise ValueError(f"{path.name} is not an explorer trajectory file.")
        return from_parts(tensors, meta, path.name)


MAX_TRAJECTORY_BYTES = 64 * 1024**3  # what one trajectory file may hold; the file itself must hold it too


def config_from_json(text: Any, label: str) -> RunConfig:
    """A run configuration stored in a file's metadata, its JSON and field types checked first."""
    from explorer.core.compare import check_fields
    from explorer.core.files import parse_json

    if not isinstance(text, str):
        raise ValueError(f"{label}: the run configuration must be JSON text.")
    data = parse_json(text, f"{label}: the run configuration")
    check_fields(RunConfig, data, f"{label}: the run configuration", "field")
    return RunConfig.from_dict(data)


def _meta_json(meta: dict, key: str, default: Any, label: str) -> Any:
    from explorer.core.files import parse_json

    text = meta.get(key)
    return default if text is None else parse_json(text, f"{label}: metadata {key!r}")


def _data_range(value: Any, label: str) -> Optional[tuple[float, float]]:
    if value is None:
        return None
    ok = (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                               and math.isfinite(v) for v in value) and value[0] < value[1])
    if not ok:
        raise ValueError(f"{label}: metadata 'data_range' must be two finite numbers LO < HI.")
    return float(value[0]), float(value[1])


def from_parts(tensors: dict[str, torch.Tensor], meta: dict, label: str,
               noise: Optional[torch.Tensor] = None) -> Trajectory:
    """A :class:`Trajectory` from a file's tensors and string metadata, after checking all of them."""
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError(f"{label}: the metadata must map names to strings.")
    if "config" not in meta:
        raise ValueError(f"{label} is not a trajectory file (its metadata has no 'config').")
    config = config_from_json(meta["config"], label)
    nfe = meta.get("nfe", "0")
    if not nfe.isdigit() or len(nfe) > 12:
        raise ValueError(f"{label}: metadata 'nfe' must be a non-negative integer, not {nfe[:20]!r}.")
    extra = _meta_json(meta, "extra", {}, label)
    if not isinstance(extra, dict):
        raise ValueError(f"{label}: metadata 'extra' must be a JSON object.")
    parts = dict(tensors)
    if noise is not None:
        parts["noise"] = noise
    check_tensors(parts, label)
    x = parts["x"]
    return Trajectory(
        config=config, denoiser_id=meta.get("denoiser", ""), nfe=int(nfe),
        t=parts["t"], sigma=parts["sigma"], scale=parts["scale"], x=x, denoised=parts["denoised"],
        noise=parts["noise"].to(x.dtype), eval_sigma=parts.get("eval_sigma"), eval_x=parts.get("eval_x"),
        eval_step=parts.get("eval_step"), extra=extra,
        data_range=_data_range(_meta_json(meta, "data_range", None, label), label),
    )


def check_tensors(parts: dict[str, torch.Tensor], label: str) -> None:
    """Shapes and dtypes of a trajectory's tensors agree with each other (SPEC §6), or ValueError."""
    missing = [k for k in ("t", "sigma", "scale", "x", "denoised", "noise") if k not in parts]
    if missing:
        raise ValueError(f"{label} is not a trajectory file: it lacks the tensor(s) {', '.join(missing)}.")
    for name, tensor in parts.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{label}: {name!r} is not a tensor.")
        if name != "eval_step" and not tensor.is_floating_point():
            raise ValueError(f"{label}: tensor {name!r} holds {tensor.dtype}, expected floating-point numbers.")
    x = parts["x"]
    if x.ndim < 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{label}: tensor 'x' has shape {list(x.shape)}, expected [states, batch, *sample shape].")
    states, sample = x.shape[0], list(x.shape[1:])
    for name in ("t", "sigma", "scale"):
        if list(parts[name].shape) != [states]:
            raise ValueError(f"{label}: tensor {name!r} has shape {list(parts[name].shape)}; 'x' has {states} states, "
                             f"so it needs [{states}].")
        if not bool(torch.isfinite(parts[name]).all()) or bool((parts[name] < 0).any()):
            raise ValueError(f"{label}: tensor {name!r} must hold finite non-negative numbers.")
    if not bool((parts["scale"] > 0).all()):
        raise ValueError(f"{label}: tensor 'scale' must be positive.")
    if list(parts["denoised"].shape[1:]) != sample or parts["denoised"].shape[0] not in (0, states - 1):
        raise ValueError(f"{label}: tensor 'denoised' has shape {list(parts['denoised'].shape)}, expected "
                         f"[{states - 1}, {', '.join(map(str, sample))}].")
    if list(parts["noise"].shape) != sample:
        raise ValueError(f"{label}: tensor 'noise' has shape {list(parts['noise'].shape)}, expected {sample}.")
    _check_evals(parts, states, sample, label)


def _check_evals(parts: dict[str, torch.Tensor], states: int, sample: list[int], label: str) -> None:
    sigma, step, ex = parts.get("eval_sigma"), parts.get("eval_step"), parts.get("eval_x")
    count = None if sigma is None else sigma.shape[0] if sigma.ndim == 1 else -1
    if count == -1:
        raise ValueError(f"{label}: tensor 'eval_sigma' must be one-dimensional.")
    if step is not None:
        if step.is_floating_point() or list(step.shape) != [count if count is not None else step.shape[0]]:
            raise ValueError(f"{label}: tensor 'eval_step' must be integers, one per evaluation.")
        if step.numel() and int(step.min()) < 0:
            raise ValueError(f"{label}: tensor 'eval_step' names a negative step.")
    if ex is not None and (list(ex.shape[1:]) != sample or (count is not None and ex.shape[0] != count)):
        raise ValueError(f"{label}: tensor 'eval_x' has shape {list(ex.shape)}, expected [{count}, "
                         f"{', '.join(map(str, sample))}].")


def _write(tmp: str, suffix: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, tmp, metadata=meta)
        canonical_safetensors(tmp)  # byte-reproducible files
    else:
        arrays = {k: v.numpy() for k, v in tensors.items()}
        arrays["__metadata__"] = np.array(json.dumps(meta))
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from explorer.core.files import parse_json, read_arrays, read_safetensors

    if path.suffix.lower() == ".npz":
        arrays = read_arrays(path, max_bytes=MAX_TRAJECTORY_BYTES, max_ratio=1000.0)
        if "__metadata__" not in arrays or arrays["__metadata__"].dtype.kind != "U":
            raise ValueError(f"{path.name} is not a trajectory file (no metadata).")
        meta = parse_json(str(arrays.pop("__metadata__")), f"{path.name}: the metadata")
        bad = [k for k, a in arrays.items() if a.dtype.kind not in "biuf"]
        if bad:
            raise ValueError(f"{path.name}: array {bad[0]!r} does not hold numbers.")
        return {k: torch.from_numpy(a.copy()) for k, a in arrays.items()}, meta
    tensors, meta = read_safetensors(path, max_bytes=MAX_TRAJECTORY_BYTES)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not an explorer trajectory file.")
    return tensors, meta


class _Rows:
    """A growing ``[n, *row]`` host tensor: rows are copied in (converting dtype, leaving pinned
    staging memory), preallocated when the count is known so that nothing is stacked at the end."""

    def __init__(self, capacity: Optional[int], dtype: Optional[torch.dtype]) -> None:
        self.capacity = capacity
        self.dtype = dtype
        self.data: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, row: torch.Tensor) -> None:
        with torch.inference_mode(False):  # normal tensors, even when called from inside a sampling loop
            self._add(row.detach())

    def _add(self, row: torch.Tensor) -> None:
        if self.data is None:
            size = max(self.capacity or 8, 1)
            self.data = torch.empty((size, *row.shape), dtype=self.dtype or row.dtype)
        elif self.count == self.data.shape[0]:
            grown = torch.empty((2 * self.count, *self.data.shape[1:]), dtype=self.data.dtype)
            grown[: self.count] = self.data
            self.data = grown
        self.data[self.count].copy_(row)
        self.count += 1

    def drop_last(self) -> None:
        self.count -= 1

    def tensor(self) -> Optional[torch.Tensor]:
        return None if self.data is None else self.data[: self.count]

    @property
    def nbytes(self) -> int:
        return 0 if self.data is None else self.data.nelement() * self.data.element_size()


class TrajectoryRecorder:
    """Collects step events into a :class:`Trajectory` (tensors copied to the CPU).

    Options that bound host memory (a batch of 1024 RGB 32×32 samples over 35 steps is
    0.9 GB in float32 before the evaluations are counted):

    - ``storage_dtype``: e.g. ``torch.float16`` halves x, denoised, eval_x and noise
      (t, σ and s stay in the run's precision);
    - ``samples``: record only these samples of the batch (indices);
    - ``steps``: record only these states (indices; the initial and final states are always
      kept), with the evaluations of those steps. ``extra`` then names what was kept.

    When the number of steps is known from the first event, every tensor is allocated once
    at its final size; :meth:`estimate_bytes` predicts that size before a run.
    """

    def __init__(self, config: RunConfig, denoiser_id: str, record_evals: bool = True,
                 storage_dtype: Optional[torch.dtype] = None, samples: Optional[Sequence[int]] = None,
                 steps: Optional[Sequence[int]] = None, data_range: Optional[Sequence[float]] = None) -> None:
        self.config, self.denoiser_id, self.record_evals = config, denoiser_id, record_evals
        self.data_range = None if data_range is None else (float(data_range[0]), float(data_range[1]))
        self.storage_dtype = storage_dtype
        self.samples = _index_list(samples, "sample", config.batch)
        self.steps = None if steps is None else set(_index_list(steps, "step", None)) | {0}
        self.t: list[float] = []
        self.sigma: list[float] = []
        self.scale: list[float] = []
        self.indices: list[int] = []
        self.eval_sigma: list[float] = []
        self.eval_step: list[int] = []
        self.nfe = 0
        self.noise: Optional[torch.Tensor] = None
        self.run_dtype: Optional[torch.dtype] = None
        self.x: Optional[_Rows] = None
        self.denoised: Optional[_Rows] = None
        self.eval_x: Optional[_Rows] = None
        self._pending_last: Optional[StepEvent] = None  # an unrecorded state that may turn out to be the last

    # ------------------------------------------------------------------ sizes
    def estimate_bytes(self, shape: Sequence[int], batch: int, n_steps: int, nfe: int,
                       run_dtype: torch.dtype = torch.float32) -> int:
        """Host bytes this recorder will hold for a run of ``n_steps`` steps and ``nfe`` evaluations."""
        kept_samples = len(self.samples) if self.samples is not None else batch
        states = n_steps + 1 if self.steps is None else len({i for i in self.steps if i <= n_steps} | {n_steps})
        evals = nfe if self.steps is None else round(nfe * (states - 1) / max(n_steps, 1))
        store = torch.empty((), dtype=self.storage_dtype or run_dtype).element_size()
        meta = torch.empty((), dtype=run_dtype).element_size()
        image = kept_samples * math.prod(shape) * store
        rows = states + (states - 1) + (evals if self.record_evals else 0) + 1  # x, denoised, eval_x, noise
        return rows * image + 3 * states * meta + evals * (meta + 8)

    @property
    def allocated_bytes(self) -> int:
        """Host bytes the recorder holds now."""
        rows = [self.x, self.denoised, self.eval_x]
        noise = 0 if self.noise is None else self.noise.nelement() * self.noise.element_size()
        return sum(r.nbytes for r in rows if r is not None) + noise

    # ------------------------------------------------------------------ recording
    def add(self, ev: StepEvent) -> None:
        if self.x is None:
            self._start(ev)
        self.nfe = ev.nfe
        if self.steps is not None and ev.index not in self.steps and ev.index != ev.total_steps:
            self._pending_last = ev  # kept only if no other state follows
            return
        self._pending_last = None
        self._record(ev)

    def _start(self, ev: StepEvent) -> None:
        self.run_dtype = ev.x.dtype
        states = None if ev.total_steps is None else ev.total_steps + 1
        if states is not None and self.steps is not None:
            states = len({i for i in self.steps if i < states} | {0, states - 1})
        self.x = _Rows(states, self.storage_dtype)
        self.denoised = _Rows(None if states is None else states - 1, self.storage_dtype)
        self.eval_x = _Rows(None, self.storage_dtype)
        if ev.noise is not None:
            self.noise = self._rows_of(ev.noise).to("cpu", self.storage_dtype or ev.noise.dtype, copy=True)

    def _rows_of(self, tensor: torch.Tensor) -> torch.Tensor:
        """The recorded samples of a ``[B, …]`` tensor (all of them by default)."""
        if self.samples is None:
            return tensor
        return tensor[torch.tensor(self.samples, device=tensor.device)]

    def _record(self, ev: StepEvent) -> None:
        self.t.append(ev.t)
        self.sigma.append(ev.sigma)
        self.scale.append(ev.scale)
        self.indices.append(ev.index)
        self.x.add(self._rows_of(ev.x))
        if ev.denoised is not None:
            self.denoised.add(self._rows_of(ev.denoised))
        self.eval_sigma.extend(ev.eval_sigma)
        self.eval_step.extend([ev.index] * len(ev.eval_sigma))
        if self.record_evals:
            if self.eval_x.capacity is None and ev.eval_x and self.denoised.capacity is not None:
                self.eval_x.capacity = len(ev.eval_x) * self.denoised.capacity  # evaluations per step x steps
            for e in ev.eval_x:
                self.eval_x.add(self._rows_of(e))

    def finish(self) -> Trajectory:
        if self._pending_last is not None:
            self._record(self._pending_last)
            self._pending_last = None
        x = self.x.tensor()
        store = x.dtype
        meta = self.run_dtype if self.storage_dtype is not None else store  # SPEC §6: float32, or float64 runs
        denoised = self.denoised.tensor()
        if denoised is None:
            denoised = x[:0]
        extra = {}
        if self.steps is not None:
            extra["recorded_steps"] = list(self.indices)
        if self.samples is not None:
            extra["recorded_samples"] = list(self.samples)
        noise = self.noise.to(store) if self.noise is not None else x[0] / (self.sigma[0] * self.scale[0])
        eval_x = self.eval_x.tensor() if self.record_evals else None
        return Trajectory(
            config=self.config, denoiser_id=self.denoiser_id,
            t=torch.tensor(self.t, dtype=meta), sigma=torch.tensor(self.sigma, dtype=meta),
            scale=torch.tensor(self.scale, dtype=meta), x=x, denoised=denoised,
            noise=noise, nfe=self.nfe,
            eval_sigma=torch.tensor(self.eval_sigma, dtype=meta),
            eval_step=torch.tensor(self.eval_step, dtype=torch.int64),
            eval_x=eval_x if eval_x is not None and len(eval_x) else None,
            extra=extra, data_range=self.data_range,
        )


def _index_list(values: Optional[Sequence[int]], what: str, limit: Optional[int]) -> Optional[list[int]]:
    """Sorted distinct indices, checked (ValueError names the bad one)."""
    if values is None:
        return None
    out = sorted({int(v) for v in values})
    if not out:
        raise ValueError(f"Give at least one {what} to record.")
    if out[0] < 0 or (limit is not None and out[-1] >= limit):
        bad = out[0] if out[0] < 0 else out[-1]
        bound = f" (the batch has {limit})" if limit is not None else ""
        raise ValueError(f"Cannot record {what} {bad}{bound}.")
    return out
