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

from explorer.core.compare import ColumnRun, Comparison, ComparisonResult
from explorer.core.files import parse_json, read_safetensors
from explorer.core.trajectory import MAX_TRAJECTORY_BYTES, from_parts
from explorer.export.files import save_safetensors

BUNDLE_FORMAT = "explorer-comparison-bundle/1"


def _prefix(column: Optional[int]) -> str:
    return "reference." if column is None else f"column{column}."


def save_bundle(result: ComparisonResult, path: str | Path,
                data_range: Optional[tuple[float, float]] = None) -> Path:
    """Write the comparison, with the model's data range so its exports never need the model again."""
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
    if data_range is not None:
        meta["data_range"] = json.dumps([float(v) for v in data_range])
    return save_safetensors(tensors, meta, path)


def load_bundle(path: str | Path) -> ComparisonResult:
    """Read a saved comparison; every field and tensor is checked (ValueError naming the file and field).

    The data range, when the file records it, is on every run's trajectory (``data_range``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Comparison file {str(path)!r} does not exist.")
    tensors, meta = read_safetensors(path, max_bytes=MAX_TRAJECTORY_BYTES)
    label = path.name
    if meta.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{label} is not a saved comparison (a run's trajectory file is read by `export` directly).")
    for key in ("comparison", "runs"):
        if key not in meta:
            raise ValueError(f"{label}: the metadata lacks {key!r}.")
    try:
        comparison = Comparison.from_json(meta["comparison"])
    except ValueError as err:
        raise ValueError(f"{label}: metadata 'comparison': {err}") from None
    runs_meta = parse_json(meta["runs"], f"{label}: metadata 'runs'")
    if not isinstance(runs_meta, dict):
        raise ValueError(f"{label}: metadata 'runs' must be a JSON object.")
    if "noise" not in tensors:
        raise ValueError(f"{label}: the comparison lacks its shared 'noise' tensor.")
    noise = tensors["noise"]
    result = ComparisonResult(comparison, noise)
    data_range = meta.get("data_range")
    for key, run_meta in runs_meta.items():
        column = _column(key, len(comparison.columns), label)
        if not isinstance(run_meta, dict):
            raise ValueError(f"{label}: run {key!r} must be a JSON object of strings.")
        if data_range is not None:
            run_meta = dict(run_meta, data_range=data_range)
        part = {k[len(_prefix(column)):]: v for k, v in tensors.items() if k.startswith(_prefix(column))}
        trajectory = from_parts(part, run_meta, f"{label}: run {key!r}", noise=noise)
        run = ColumnRun(trajectory.config, trajectory, math.nan, -1 if column is None else column)
        if column is None:
            result.reference = run
        else:
            result.runs[column] = run
    return result


def _column(key: str, columns: int, label: str) -> Optional[int]:
    if key == "reference":
        return None
    if not (key.isdigit() and int(key) < columns):
        raise ValueError(f"{label}: run {key[:20]!r} is neither 'reference' nor a column 0..{columns - 1}.")
    return int(key)
