"""A training state written as several safetensors files of bounded size, read back bit for bit.

A GPU session here returns at most a few files of 16 MB each, so the state of a long run
(weights, EMA weights, Adam's two moments, RNG states and counters) must fit in pieces of that
size to be carried from one session to the next. The tensors are grouped by role (``net``,
``ema``, ``adam-m``, ``adam-v``, ``misc``); a group that outgrows the limit spills into further
files, and a single tensor bigger than the limit is stored as flat slices. Everything that is
not a tensor (optimizer hyper-parameters, counters, the config) travels as JSON in the
``misc`` file's metadata. The whole folder is replaced at once: it is written under a new name
and swapped in, so a crash mid-write leaves the previous state readable.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

STATE_DIR = "state"
PIECE_LIMIT = 16 * 2**20  # bytes per file, including the header's generous allowance
_HEADER_ALLOWANCE = 256 * 1024
_SLICE = "::slice"


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def split_tensors(tensors: Mapping[str, torch.Tensor], limit: Optional[int] = None) -> list[dict[str, torch.Tensor]]:
    """Group tensors (in order) into dicts whose payload stays under ``limit`` bytes each.

    A tensor larger than the budget is flattened and cut into slices named ``name::slice<i>``
    which :func:`join_tensors` glues back; its shape is recorded in the piece's keys' order.
    """
    limit = PIECE_LIMIT if limit is None else limit
    budget = limit - _HEADER_ALLOWANCE
    if budget <= 0:
        raise ValueError(f"A state piece limit of {limit} bytes leaves no room for tensors.")
    pieces: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        parts = {name: tensor}
        if _nbytes(tensor) > budget:
            per = max(budget // tensor.element_size(), 1)
            flat = tensor.reshape(-1)
            parts = {f"{name}{_SLICE}{i}": flat[s:s + per].clone() for i, s in enumerate(range(0, flat.numel(), per))}
        for key, part in parts.items():
            if used + _nbytes(part) > budget and pieces[-1]:
                pieces.append({})
                used = 0
            pieces[-1][key] = part
            used += _nbytes(part)
    return pieces


def join_tensors(flat: Mapping[str, torch.Tensor], shapes: Mapping[str, list[int]]) -> dict[str, torch.Tensor]:
    """Undo :func:`split_tensors`: glue slices back into tensors of the recorded shapes."""
    out: dict[str, torch.Tensor] = {}
    sliced: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for key, tensor in flat.items():
        if _SLICE in key:
            name, index = key.split(_SLICE)
            sliced.setdefault(name, []).append((int(index), tensor))
        else:
            out[key] = tensor
    for name, parts in sliced.items():
        out[name] = torch.cat([t for _, t in sorted(parts, key=lambda p: p[0])]).reshape(shapes[name])
    return out


def write_state(folder: Path, groups: Mapping[str, Mapping[str, torch.Tensor]], info: Mapping[str, Any],
                limit: Optional[int] = None) -> list[Path]:
    """Write ``groups`` (role -> tensors) and JSON ``info`` as ``folder/state/<role>-<i>.safetensors``.

    Returns the files written. The previous ``state`` folder is replaced only once every
    piece of the new one is on disk.
    """
    from explorer.core.files import save_safetensors

    folder = Path(folder)
    new, final, old = folder / (STATE_DIR + ".new"), folder / STATE_DIR, folder / (STATE_DIR + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    shapes = {f"{role}/{k}": list(v.shape) for role, tensors in groups.items() for k, v in tensors.items()}
    written = []
    for role, tensors in groups.items():
        for i, piece in enumerate(split_tensors(tensors, limit)):
            meta = {"role": role, "piece": str(i)}
            if role == "misc" and i == 0:
                meta["info"] = json.dumps(info, sort_keys=True)
                meta["shapes"] = json.dumps(shapes, sort_keys=True)
            written.append(save_safetensors(piece, meta, new / f"{role}-{i}.safetensors"))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return [final / p.name for p in written]


def has_state(folder: Path) -> bool:
    folder = Path(folder)
    return any((folder / d / "misc-0.safetensors").is_file() for d in (STATE_DIR, STATE_DIR + ".old"))


def read_state(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """The groups and info that :func:`write_state` wrote (falls back to ``state.old`` after a crash)."""
    from safetensors import safe_open

    folder = Path(folder)
    where = next((folder / d for d in (STATE_DIR, STATE_DIR + ".old") if (folder / d / "misc-0.safetensors").is_file()),
                 None)
    if where is None:
        raise ValueError(f"{folder} holds no training state ({STATE_DIR}/misc-0.safetensors).")
    flat: dict[str, dict[str, torch.Tensor]] = {}
    info: dict[str, Any] = {}
    shapes: dict[str, list[int]] = {}
    for path in sorted(where.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            role = meta.get("role", path.stem.rsplit("-", 1)[0])
            if "info" in meta:
                info, shapes = json.loads(meta["info"]), json.loads(meta["shapes"])
            group = flat.setdefault(role, {})
            for key in f.keys():
                group[key] = f.get_tensor(key)
    groups = {role: join_tensors(t, {k.split("/", 1)[1]: s for k, s in shapes.items() if k.startswith(role + "/")})
              for role, t in flat.items()}
    return groups, info
