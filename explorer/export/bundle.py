"""A whole comparison in one ``.safetensors`` file (every column, the reference, the latents).

Tensors are those of each run's trajectory file (SPEC §6) under ``column<k>.`` or
``reference.``, plus the shared ``noise`` once. The metadata holds the comparison's
JSON and each run's own trajectory metadata, so :func:`load_bundle` gives back a
:class:`ComparisonResult` that exports exactly as the original did (run times are not
stored: they are the one thing a rerun cannot reproduce).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import torch

from explorer.core.compare import ColumnRun, Comparison, ComparisonResult
from explorer.core.config import RunConfig
from explorer.core.trajectory import Trajectory
from explorer.export.files import save_safetensors

BUNDLE_FORMAT = "explorer-comparison-bundle/1"


def _prefix(column: Optional[int]) -> str:
    return "reference." if column is None else f"column{column}."


def save_bundle(result: ComparisonResult, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"A comparison file ends in .safetensors, not {path.name!r}.")
    if not result.complete:
        raise ValueError("Run every column before saving the comparison.")
    runs: list[tuple[Optional[int], ColumnRun]] = list(enumerate(result.finished()))
    if result.reference is not None:
        runs.append((None, result.reference))
    tensors = {"noise": result.noise.detach().cpu().contiguous().clone()}
    meta_runs = {}
    for k, run in runs:
        for name, value in run.trajectory.tensors().items():
            if name != "noise":  # stored once for all columns
                tensors[_prefix(k) + name] = value.clone()
        meta_runs["reference" if k is None else str(k)] = run.trajectory.metadata()
    meta = {"format": BUNDLE_FORMAT, "comparison": result.comparison.to_json(indent=None), "runs": json.dumps(meta_runs, sort_keys=True)}
    return save_safetensors(tensors, meta, path)


def load_bundle(path: str | Path) -> ComparisonResult:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Comparison file {str(path)!r} does not exist.")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises several types for foreign files
        raise ValueError(f"Could not read {path.name}: {err}") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path.name} is not a saved comparison (a run's trajectory file is read by `export` directly).")
    comparison = Comparison.from_json(meta["comparison"])
    runs_meta = json.loads(meta["runs"])
    noise = tensors["noise"]
    result = ComparisonResult(comparison, noise)
    for key, run_meta in runs_meta.items():
        column = None if key == "reference" else int(key)
        run = ColumnRun(RunConfig.from_json(run_meta["config"]), _trajectory(tensors, _prefix(column), run_meta, noise), math.nan,
                        -1 if column is None else column)
        if column is None:
            result.reference = run
        else:
            result.runs[column] = run
    return result


def _trajectory(tensors: dict[str, torch.Tensor], prefix: str, meta: dict[str, str], noise: torch.Tensor) -> Trajectory:
    part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return Trajectory(
        config=RunConfig.from_json(meta["config"]), denoiser_id=meta.get("denoiser", ""), nfe=int(meta.get("nfe", 0)),
        t=part["t"], sigma=part["sigma"], scale=part["scale"], x=part["x"], denoised=part["denoised"],
        noise=noise.to(part["x"].dtype), eval_sigma=part.get("eval_sigma"), eval_x=part.get("eval_x"),
        eval_step=part.get("eval_step"), extra=json.loads(meta.get("extra", "{}")),
    )
