"""Turn an official NVlabs EDM network pickle into the explorer's own preconditioned network.

The pickle is read as data by :mod:`explorer.models.edm_pickle` (no code from the file runs).
Its ``ema`` record names the preconditioner (``EDMPrecond``, ``VPPrecond``, ``VEPrecond``,
``iDDPMPrecond``) and carries the constructor kwargs; the same kwargs build our clean-room
equivalent (:func:`explorer.models.networks.denoiser_from_edm_kwargs`), whose state-dict names
are EDM's, so the weights load strictly. Class-conditional models keep their ``label_dim``.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Union

import torch

from explorer.core.precond import Preconditioner
from explorer.models.checkpoint import save_checkpoint
from explorer.models.edm_pickle import ObjectRecord, read_edm_snapshot
from explorer.models.networks import EDM_PRECOND_CLASSES, denoiser_from_edm_kwargs
from explorer.models.provenance import EDM_LICENCE, EDM_LICENCE_NOTE, file_sha256, json_safe, write_model_card
from explorer.models.strict_load import load_strict

PathLike = Union[str, Path]

# Plain attributes of the official preconditioners that must agree with what we build
# (σ_min/σ_max of VP and iDDPM are left out: EDM stores float32-rounded values of them).
_CONSTANTS = {
    "edm": ("sigma_data", "sigma_min", "sigma_max"),
    "ve": ("sigma_min", "sigma_max"),
    "vp": ("beta_d", "beta_min", "M", "epsilon_t"),
    "iddpm": ("C_1", "C_2", "M"),
}


def _build(ema: ObjectRecord, label: str) -> Preconditioner:
    """Our preconditioner + network for the record's class and kwargs, on the meta device."""
    if ema.class_name not in EDM_PRECOND_CLASSES:
        known = ", ".join(EDM_PRECOND_CLASSES)
        raise ValueError(f"{label} holds a {ema.class_name}; only EDM preconditioned networks ({known}) "
                         "can be imported.")
    kwargs = ema.state.get("_init_kwargs")
    if not isinstance(kwargs, dict) or ema.state.get("_init_args"):
        raise ValueError(f"{label}: the {ema.class_name} record lacks its constructor keyword arguments.")
    missing = [k for k in ("img_resolution", "img_channels") if k not in kwargs]
    if missing:
        raise ValueError(f"{label}: the {ema.class_name} kwargs lack {', '.join(missing)}.")
    try:
        net = denoiser_from_edm_kwargs(ema.class_name, kwargs, device="meta",
                                       label=f"{label}: {ema.class_name} kwargs")
    except (TypeError, KeyError, ArithmeticError) as err:
        raise ValueError(f"{label}: cannot build {ema.class_name} from its recorded kwargs ({err}).") from None
    inner = ema.children().get("model")
    if not isinstance(inner, ObjectRecord) or inner.class_name != type(net.model).__name__:
        found = getattr(inner, "class_name", "nothing")
        raise ValueError(f"{label}: the network inside {ema.class_name} is {found}, "
                         f"but its kwargs describe a {type(net.model).__name__}.")
    _check_constants(ema, net, label)
    return net


def _check_constants(ema: ObjectRecord, net: Preconditioner, label: str) -> None:
    for key in _CONSTANTS[net.kind]:
        if key not in ema.state:
            continue
        theirs, ours = ema.state[key], getattr(net, key)
        if not _same_number(theirs, ours):
            raise ValueError(f"{label}: {ema.class_name}.{key} is {theirs!r} in the pickle but {ours!r} in the "
                             "rebuilt network; the file was made by modified code.")


def _same_number(theirs: object, ours: float) -> bool:
    if not isinstance(theirs, (int, float)) or isinstance(theirs, bool):
        return False
    try:
        return theirs == ours or math.isclose(theirs, ours, rel_tol=1e-9)
    except OverflowError:  # an int beyond float range
        return False


def _source_info(path: Path, data: dict, ema: ObjectRecord) -> dict[str, Any]:
    inner = ema.children()["model"]
    source = ema.module_src or ""
    return {
        "source_format": "edm-pickle",
        "source_file": str(path),
        "sha256": file_sha256(path),
        "precond_class": f"training.networks.{ema.class_name}",
        "model_class": f"training.networks.{inner.class_name}",
        "init_kwargs": json_safe(ema.init_kwargs),
        "module_src_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
        "snapshot_keys": [str(k) for k in data],
        "licence": EDM_LICENCE,
    }


def load_edm_pickle(path: PathLike, device: Union[str, torch.device] = "cpu") -> Preconditioner:
    """Open an official EDM network pickle as a ready :class:`~explorer.core.denoiser.Denoiser`.

    Nothing in the file is executed. The result is our EDMPrecond/VPPrecond/VEPrecond/IDDPMPrecond
    around our SongUNet/DhariwalUNet, in eval mode, with ``source_info`` (original class names,
    kwargs, the file's sha256) attached. Raises ValueError for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is not a file.")
    data = read_edm_snapshot(path)
    ema = data["ema"]
    net = _build(ema, path.name)
    load_strict(net, ema.state_dict(), f"{path.name}: the weights do not fit the network its kwargs describe",
                assign=True)
    net = net.to(device).eval().requires_grad_(False)
    net.name = path.stem
    net.source_info = _source_info(path, data, ema)
    net.dataset = _dataset_name(data)
    return net


def _dataset_name(data: dict) -> str:
    kwargs = data.get("dataset_kwargs")
    where = kwargs.get("path") if isinstance(kwargs, dict) else None
    return Path(where).stem if isinstance(where, str) and where else "unknown"


def convert_edm_pickle(pkl: PathLike, out_safetensors: PathLike) -> Path:
    """Write an EDM pickle as an explorer checkpoint (SPEC §6) plus a Markdown model card beside it.

    The metadata names the source file, its sha256, the original classes and kwargs, and the
    licence of the official weights (CC BY-NC-SA 4.0). Returns the checkpoint's path.
    """
    out = Path(out_safetensors)
    if out.suffix != ".safetensors":
        raise ValueError(f"The output file must end in .safetensors, not {out.name!r}.")
    net = load_edm_pickle(pkl)
    info = net.source_info
    save_checkpoint(out, net, dataset=net.dataset,
                    extra={"source": info, "licence": EDM_LICENCE, "licence_note": EDM_LICENCE_NOTE})
    write_model_card(out.with_suffix(".md"), f"{net.name} (converted NVlabs EDM network)", info, EDM_LICENCE_NOTE, checkpoint=out)
    return out
