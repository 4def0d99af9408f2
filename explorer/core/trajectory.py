"""A finished run, and its file (SPEC §6): ``.safetensors`` (or ``.npz``).

Tensors: ``t``, ``sigma``, ``scale`` ``[S]``; ``x`` ``[S, B, *shape]`` (S states, the
process's scaled space); ``denoised`` ``[S−1, B, *shape]`` (x₀ of each step); ``noise``
``[B, *shape]``; and, when recorded, ``eval_sigma`` ``[E]``, ``eval_x`` ``[E, B, *shape]``
and ``eval_step`` ``[E]`` (the step each evaluation belongs to). The metadata holds the
JSON of the run configuration, the denoiser id, seed, library version and NFE.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from explorer.core.config import RunConfig
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
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Trajectory file {str(path)!r} does not exist.")
        try:
            tensors, meta = _read(path)
            config = RunConfig.from_json(meta["config"])
            return cls(
                config=config, denoiser_id=meta.get("denoiser", ""), nfe=int(meta.get("nfe", 0)),
                t=tensors["t"], sigma=tensors["sigma"], scale=tensors["scale"], x=tensors["x"],
                denoised=tensors["denoised"], noise=tensors["noise"],
                eval_sigma=tensors.get("eval_sigma"), eval_x=tensors.get("eval_x"), eval_step=tensors.get("eval_step"),
                extra=json.loads(meta.get("extra", "{}")),
            )
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path.name} is not a trajectory file (missing {err}).") from None
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"Could not read trajectory {path.name}: {err}") from None


def atomic_write(path: Path, write: Any) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; never leaves a partial file."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ValueError(f"Folder {str(directory)!r} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _write(tmp: str, suffix: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, tmp, metadata=meta)
    else:
        arrays = {k: v.numpy() for k, v in tensors.items()}
        arrays["__metadata__"] = np.array(json.dumps(meta))
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__metadata__"]))
            tensors = {k: torch.from_numpy(data[k]) for k in data.files if k != "__metadata__"}
        return tensors, meta
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not an explorer trajectory file.")
    return tensors, meta


class TrajectoryRecorder:
    """Collects step events into a :class:`Trajectory` (tensors copied to the CPU)."""

    def __init__(self, config: RunConfig, denoiser_id: str, record_evals: bool = True) -> None:
        self.config, self.denoiser_id, self.record_evals = config, denoiser_id, record_evals
        self.t: list[float] = []
        self.sigma: list[float] = []
        self.scale: list[float] = []
        self.x: list[torch.Tensor] = []
        self.denoised: list[torch.Tensor] = []
        self.eval_sigma: list[float] = []
        self.eval_step: list[int] = []
        self.eval_x: list[torch.Tensor] = []
        self.nfe = 0
        self.noise: Optional[torch.Tensor] = None

    def add(self, ev: StepEvent) -> None:
        if ev.noise is not None:
            self.noise = ev.noise.detach().cpu()
        self.t.append(ev.t)
        self.sigma.append(ev.sigma)
        self.scale.append(ev.scale)
        self.x.append(ev.x.detach().cpu())
        if ev.denoised is not None:
            self.denoised.append(ev.denoised.detach().cpu())
        self.eval_sigma.extend(ev.eval_sigma)
        self.eval_step.extend([ev.index] * len(ev.eval_sigma))
        if self.record_evals:
            self.eval_x.extend(e.detach().cpu() for e in ev.eval_x)
        self.nfe = ev.nfe

    def finish(self) -> Trajectory:
        x = torch.stack(self.x)
        dtype = x.dtype
        f64 = dtype  # SPEC §6: float32 by default, float64 when the run was
        denoised = torch.stack(self.denoised) if self.denoised else x[:0]
        return Trajectory(
            config=self.config, denoiser_id=self.denoiser_id,
            t=torch.tensor(self.t, dtype=f64), sigma=torch.tensor(self.sigma, dtype=f64),
            scale=torch.tensor(self.scale, dtype=f64), x=x, denoised=denoised,
            noise=self.noise.to(dtype) if self.noise is not None else x[0] / (self.sigma[0] * self.scale[0]), nfe=self.nfe,
            eval_sigma=torch.tensor(self.eval_sigma, dtype=f64),
            eval_step=torch.tensor(self.eval_step, dtype=torch.int64),
            eval_x=torch.stack(self.eval_x) if self.record_evals and self.eval_x else None,
        )
