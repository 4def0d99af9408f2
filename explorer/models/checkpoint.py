"""The checkpoint format of SPEC §6: one ``.safetensors`` file per denoiser.

Tensors: the preconditioner's state dict (``model.*``, iDDPM's ``u``). Metadata (safetensors
allows only string values, so every value is stored as JSON text; infinities as ``"inf"``)::

    format        "explorer-denoiser/1"
    precond       "edm" | "vp" | "ve" | "iddpm"
    sigma_data    float or null (EDM only)
    sigma_min     float            sigma_max   float or "inf"
    precond_kwargs {...}           the preconditioner's constants (β's of VP, M/C₁/C₂ of iDDPM)
    arch          {"class": "SongUNet" | "DhariwalUNet", ...constructor kwargs}
    shape         [C, H, W]        label_dim   int
    dataset       str              train       {...}  (how it was trained)
    name          str              plus any ``extra`` keys

Loading reads the header first and checks it completely, including every tensor name and
shape against the network built on the ``meta`` device, before any weight is read, so a
wrong or damaged file fails fast with a sentence that says what is wrong.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Optional, Union

import torch
from safetensors.torch import load_file

from explorer.core.files import parse_json, save_safetensors
from explorer.core.precond import PRECONDITIONERS, Preconditioner
from explorer.models.limits import MAX_CHANNELS, MAX_IMAGE_SIDE, MAX_LABELS, check_int, check_precond_kwargs
from explorer.models.networks import build_denoiser, build_network, network_arch

FORMAT = "explorer-denoiser/1"
RESERVED_KEYS = ("format", "precond", "sigma_data", "sigma_min", "sigma_max", "precond_kwargs", "arch", "shape",
                 "label_dim", "dataset", "train", "name")
_FLOAT_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header

PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------------ metadata codec

def _to_json_safe(value: Any) -> Any:
    """Replace non-finite floats (not valid JSON) by the strings ``"inf"``, ``"-inf"``, ``"nan"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_safe(v) for v in value]
    return value


def _encode_metadata(meta: dict) -> dict[str, str]:
    try:
        return {key: json.dumps(_to_json_safe(value), allow_nan=False) for key, value in meta.items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Checkpoint metadata must be plain JSON values: {exc}.") from None


def _decode_metadata(raw: dict[str, str], path: PathLike = "the checkpoint") -> dict[str, Any]:
    meta = {}
    for key, text in raw.items():
        try:
            meta[key] = parse_json(text, f"{path}: checkpoint metadata {key!r}")
        except ValueError as err:
            if "nesting deeper" in str(err) or "more than the limit" in str(err):
                raise
            meta[key] = text  # a plain string written by another tool
    return meta


# ------------------------------------------------------------------------------ saving

def save_checkpoint(path: PathLike, denoiser: Preconditioner, *, dataset: str, train: Optional[dict] = None,
                    extra: Optional[dict] = None) -> None:
    """Write ``denoiser`` (a preconditioned SongUNet/DhariwalUNet) to ``path`` atomically.

    The file appears complete or not at all: it is written next to ``path`` under a temporary
    name and renamed. ``extra`` adds metadata keys of your own (not the reserved ones).
    """
    if not isinstance(denoiser, Preconditioner):
        raise ValueError("Only preconditioned networks (EDMPrecond, VPPrecond, ...) can be saved as checkpoints.")
    clash = sorted(set(extra or {}) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"Extra metadata may not redefine {', '.join(clash)}.")
    config = denoiser.config()
    meta = {
        "format": FORMAT,
        "precond": denoiser.kind,
        "sigma_data": config.get("sigma_data"),
        "sigma_min": float(denoiser.sigma_min),
        "sigma_max": float(denoiser.sigma_max),
        "precond_kwargs": config,
        "arch": network_arch(denoiser.model),
        "shape": list(denoiser.shape),
        "label_dim": int(denoiser.label_dim),
        "dataset": str(dataset),
        "train": dict(train or {}),
        "name": denoiser.name,
        **(extra or {}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in denoiser.state_dict().items()}
    save_safetensors(tensors, _encode_metadata(meta), path)


# ------------------------------------------------------------------------------ reading the header

def _read_header(path: PathLike) -> tuple[dict[str, dict], dict[str, str]]:
    """Tensor entries and raw metadata of a safetensors file, after checking it is whole."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a file.")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is not a checkpoint: too short to be a safetensors file.")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise ValueError(f"{path} is not a safetensors file, or it is truncated (header cut off).")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError(f"{path} is not a safetensors file (unreadable header).") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a safetensors file (unreadable header).")
    raw_meta = header.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
        raise ValueError(f"{path}: the safetensors metadata must map names to strings, "
                         f"not be a {type(raw_meta).__name__}.")
    data_end = 0
    for name, entry in header.items():
        if not _valid_entry(entry):
            raise ValueError(f"{path} is not a safetensors file (bad entry for {name!r}: expected dtype, "
                             "shape and data_offsets).")
        data_end = max(data_end, entry["data_offsets"][1])
    if 8 + n + data_end > size:
        raise ValueError(f"{path} is truncated: it should hold {8 + n + data_end} bytes but has {size}.")
    return header, raw_meta


def _valid_entry(entry: Any) -> bool:
    """A tensor entry of a safetensors header: string dtype, int shape, two int offsets."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        return False
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    ints = lambda v, n=None: (isinstance(v, list) and (n is None or len(v) == n)  # noqa: E731
                              and all(type(i) is int and i >= 0 for i in v))
    return ints(shape) and len(shape) <= 8 and ints(offsets, 2) and offsets[0] <= offsets[1]


def _field(meta: dict, key: str, kind: type, path: PathLike) -> Any:
    value = meta.get(key)
    if kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{path}: checkpoint metadata {key!r} is missing or not a {kind.__name__}.")


def _check_metadata(meta: dict, path: PathLike) -> None:
    """Raise ValueError unless the metadata describes a denoiser this package can build."""
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an explorer denoiser checkpoint (format {meta.get('format')!r}, "
                         f"expected {FORMAT!r}).")
    kind = meta.get("precond")
    if kind not in PRECONDITIONERS:
        raise ValueError(f"{path}: unknown preconditioning {kind!r}; expected one of {', '.join(PRECONDITIONERS)}.")
    arch = _field(meta, "arch", dict, path)
    shape = _field(meta, "shape", list, path)
    label_dim = check_int(meta.get("label_dim"), 0, MAX_LABELS, f"{path}: checkpoint metadata 'label_dim'")
    _field(meta, "sigma_min", float, path)
    _field(meta, "sigma_max", float, path)
    if kind == "edm":
        _field(meta, "sigma_data", float, path)
    if len(shape) != 3:
        raise ValueError(f"{path}: checkpoint metadata 'shape' must be [C, H, W], got {len(shape)} numbers.")
    for i, (size, high) in enumerate(zip(shape, (MAX_CHANNELS, MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))):
        check_int(size, 1, high, f"{path}: checkpoint metadata 'shape'[{i}]")
    _check_precond_fields(meta, kind, path)
    c, h, w = shape
    out = c * (2 if kind == "iddpm" else 1)
    described = (arch.get("in_channels"), arch.get("img_resolution"), arch.get("img_resolution"))
    if described != (c, h, w) or arch.get("out_channels") != out or arch.get("label_dim", 0) != label_dim:
        raise ValueError(f"{path}: the network description does not fit shape {shape} and label_dim {label_dim}.")
    build_network(arch, device="meta", label=f"{path}: checkpoint metadata 'arch'")  # bad settings -> ValueError


def _check_precond_fields(meta: dict, kind: str, path: PathLike) -> None:
    """σ range, σ_data and the stored constants belong to the preconditioning the file names."""
    label = f"{path}: checkpoint metadata"
    top = {k: meta[k] for k in ("sigma_data", "sigma_min", "sigma_max") if meta.get(k) is not None}
    if kind in ("edm", "ve"):
        check_precond_kwargs(kind, {k: float(v) for k, v in top.items() if k != "sigma_data" or kind == "edm"},
                             label)
    stored = meta.get("precond_kwargs")
    if stored is not None:
        stored = {k: (float(v) if isinstance(v, str) and v in ("inf", "-inf", "nan") else v)
                  for k, v in stored.items()} if isinstance(stored, dict) else stored
        check_precond_kwargs(kind, stored, f"{label} 'precond_kwargs'", allow_derived=True)
    train = meta.get("train")
    loss = train.get("loss") if isinstance(train, dict) else None
    if isinstance(loss, str) and loss in PRECONDITIONERS and loss != kind:
        raise ValueError(f"{label}: the weights were trained with the {loss} loss but 'precond' says {kind}; "
                         "a network only works with the preconditioning it was trained for.")


def read_checkpoint_metadata(path: PathLike) -> dict[str, Any]:
    """The decoded and checked metadata of a checkpoint (reads only the header)."""
    _, raw = _read_header(path)
    meta = _decode_metadata(raw, path)
    _check_metadata(meta, path)
    for key in ("sigma_data", "sigma_min", "sigma_max"):
        if meta.get(key) is not None:
            meta[key] = float(meta[key])
    return meta


# ------------------------------------------------------------------------------ loading

def _precond_kwargs(meta: dict) -> dict[str, Any]:
    """Constructor constants of the preconditioner, from ``precond_kwargs`` or the top-level fields."""
    kind = meta["precond"]
    stored = dict(meta.get("precond_kwargs") or {})
    if kind == "edm":
        return dict(sigma_data=meta["sigma_data"], sigma_min=meta["sigma_min"], sigma_max=meta["sigma_max"])
    if kind == "ve":
        return dict(sigma_min=meta["sigma_min"], sigma_max=meta["sigma_max"])
    names = ("beta_d", "beta_min", "M", "epsilon_t") if kind == "vp" else ("C_1", "C_2", "M")
    return {k: stored[k] for k in names if k in stored}


def _check_weights(expected: dict[str, torch.Tensor], header: dict[str, dict], path: PathLike) -> None:
    """Compare the file's tensors with the network's state dict; name the first mismatch."""
    for name, tensor in expected.items():
        entry = header.get(name)
        if entry is None:
            raise ValueError(f"{path}: the weights lack tensor {name!r} that the described network needs.")
        if entry["shape"] != list(tensor.shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {entry['shape']}, the network needs "
                             f"{list(tensor.shape)}.")
        if entry.get("dtype") not in _FLOAT_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {entry.get('dtype')}, expected a float type.")
    extra = [name for name in header if name not in expected]
    if extra:
        raise ValueError(f"{path}: unexpected tensor {extra[0]!r} that the described network does not have.")


def _check_sigma_range(net: Preconditioner, meta: dict, path: PathLike) -> None:
    for key in ("sigma_min", "sigma_max"):
        have, want = float(getattr(net, key)), float(meta[key])
        if not math.isclose(have, want, rel_tol=1e-6):
            raise ValueError(f"{path}: metadata says {key} = {want}, the preconditioner gives {have}.")


def load_checkpoint(path: PathLike, device: Union[str, torch.device] = "cpu",
                    dtype: Optional[torch.dtype] = None) -> Preconditioner:
    """Load a checkpoint as a ready denoiser (eval mode, no gradients) on ``device``.

    Everything that can be checked from the header is checked before any tensor is read.
    """
    header, raw = _read_header(path)
    meta = _decode_metadata(raw, path)
    _check_metadata(meta, path)
    name = meta.get("name") if isinstance(meta.get("name"), str) and meta.get("name") else Path(path).stem
    net = build_denoiser(meta["precond"], meta["arch"], _precond_kwargs(meta), device="meta", name=name,
                         label=f"{path}: checkpoint metadata")
    _check_weights(net.state_dict(), header, path)
    if meta["precond"] == "vp":
        _check_sigma_range(net, meta, path)
    try:
        state = load_file(str(path), device=str(torch.device(device)))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: cannot read the weights ({exc}).") from None
    net.load_state_dict(state, strict=True, assign=True)
    if meta["precond"] == "iddpm":
        _check_sigma_range(net, meta, path)
    if dtype is not None:
        net = net.to(dtype)
    if net.label_dim and meta.get("dataset") == "fashion-mnist-train":  # the class picker shows names
        from explorer.train.datasets import FASHION_CLASSES

        net.label_names = list(FASHION_CLASSES[: net.label_dim])
    net.eval().requires_grad_(False)
    return net
