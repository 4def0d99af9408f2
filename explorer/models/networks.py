"""The network architectures and how to build them from a description.

An *arch* is a plain dict ``{"class": "SongUNet" | "DhariwalUNet", **constructor kwargs}``: the
form stored in checkpoints (SPEC §6). :func:`denoiser_from_edm_kwargs` builds a preconditioned
network from the constructor kwargs NVlabs ``edm`` records in its pickles (``_init_kwargs`` of
``EDMPrecond`` & co.), which is what an importer of official checkpoints needs.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Optional, Union

import torch

from explorer.core.precond import Preconditioner, make_precond
from explorer.models.limits import check_arch, check_parameter_count, check_precond_kwargs
from explorer.models.dhariwal import DhariwalUNet
from explorer.models.layers import Conv2d, FourierEmbedding, GroupNorm, Linear, PositionalEmbedding, UNetBlock
from explorer.models.songunet import SongUNet

__all__ = [
    "SongUNet", "DhariwalUNet", "UNetBlock", "Conv2d", "Linear", "GroupNorm", "PositionalEmbedding",
    "FourierEmbedding", "NETWORKS", "build_network", "network_arch", "build_denoiser", "denoiser_from_edm_kwargs",
    "EDM_PRECOND_CLASSES",
]

NETWORKS: dict[str, type[torch.nn.Module]] = {"SongUNet": SongUNet, "DhariwalUNet": DhariwalUNet}

# NVlabs edm class name -> our preconditioner kind, and the keyword arguments each takes
# besides the network's own (EDM passes those through **model_kwargs).
EDM_PRECOND_CLASSES = {"EDMPrecond": "edm", "VPPrecond": "vp", "VEPrecond": "ve", "iDDPMPrecond": "iddpm"}
_EDM_PRECOND_KWARGS = {
    "edm": ("sigma_data", "sigma_min", "sigma_max"),
    "vp": ("beta_d", "beta_min", "M", "epsilon_t"),
    "ve": ("sigma_min", "sigma_max"),
    "iddpm": ("C_1", "C_2", "M"),
}
_EDM_DEFAULT_MODEL = {"edm": "DhariwalUNet", "vp": "SongUNet", "ve": "SongUNet", "iddpm": "DhariwalUNet"}


def _device_scope(device: Union[str, torch.device, None]):
    return contextlib.nullcontext() if device is None else torch.device(device)


def arch_parameters(cls_name: str) -> list[str]:
    """Constructor keyword names of an architecture (raises ValueError for unknown classes)."""
    cls = _network_class(cls_name)
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def _network_class(cls_name: Any) -> type[torch.nn.Module]:
    try:
        return NETWORKS[cls_name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown network class {cls_name!r}; choose one of {', '.join(NETWORKS)}.") from None


def build_network(arch: dict, device: Union[str, torch.device, None] = None,
                  label: str = "The network description") -> torch.nn.Module:
    """Construct the network an arch dict describes (on ``device``; "meta" allocates nothing).

    The description is checked against :mod:`explorer.models.limits` first; on the meta device
    the parameter count is checked too, so a reader can refuse a forged file before allocating.
    """
    if not isinstance(arch, dict):
        raise ValueError(f"{label} must be a dict with a 'class' key.")
    kwargs = dict(arch)
    cls = _network_class(kwargs.pop("class", None))
    unknown = sorted(set(kwargs) - set(arch_parameters(cls.__name__)))
    if unknown:
        raise ValueError(f"{label}: {cls.__name__} has no setting(s) {', '.join(unknown)}.")
    check_arch(arch, label)
    try:
        with _device_scope(device):
            model = cls(**kwargs)
    except (TypeError, ArithmeticError, RuntimeError, IndexError) as exc:
        raise ValueError(f"{label}: cannot build {cls.__name__} from these settings ({exc}).") from None
    if str(device) == "meta":
        check_parameter_count(model.parameters(), label)
    return model


def network_arch(model: torch.nn.Module) -> dict:
    """The arch dict that rebuilds ``model`` (only for this package's networks)."""
    arch_kwargs = getattr(model, "arch_kwargs", None)
    if type(model).__name__ not in NETWORKS or arch_kwargs is None:
        raise ValueError(f"Only {', '.join(NETWORKS)} networks can be described, not {type(model).__name__}.")
    return {"class": type(model).__name__, **arch_kwargs}


def build_denoiser(precond: str, arch: dict, precond_kwargs: Optional[dict] = None,
                   device: Union[str, torch.device, None] = None, name: Optional[str] = None,
                   label: str = "The network description") -> Preconditioner:
    """A preconditioned network: ``make_precond(precond, build_network(arch), **precond_kwargs)``."""
    if precond in EDM_PRECOND_CLASSES.values():
        check_precond_kwargs(precond, precond_kwargs or {}, label)
    model = build_network(arch, device, label)
    with _device_scope(device):
        return make_precond(precond, model, name=name, **(precond_kwargs or {}))


def denoiser_from_edm_kwargs(precond_class: str, init_kwargs: dict,
                             device: Union[str, torch.device, None] = None,
                             label: str = "The EDM kwargs") -> Preconditioner:
    """Build the equivalent of ``training.networks.<precond_class>(**init_kwargs)`` of NVlabs edm.

    ``precond_class`` may be qualified (``training.networks.EDMPrecond``). ``use_fp16`` is
    accepted and ignored (use ``torch.autocast`` instead); ``img_channels`` becomes the
    network's in/out channels (twice the out channels for iDDPM's learned variance).
    """
    short = precond_class.rsplit(".", 1)[-1]
    if short not in EDM_PRECOND_CLASSES:
        raise ValueError(f"Unknown EDM preconditioner {precond_class!r}.")
    kind = EDM_PRECOND_CLASSES[short]
    kwargs = {k: (float(v) if isinstance(v, str) and v == "inf" else v) for k, v in init_kwargs.items()}
    if not isinstance(kwargs.pop("use_fp16", False), bool):
        raise ValueError(f"{label}: use_fp16 must be true or false.")
    precond_kwargs = {k: kwargs.pop(k) for k in _EDM_PRECOND_KWARGS[kind] if k in kwargs}
    channels = kwargs.pop("img_channels")
    if not isinstance(channels, int) or isinstance(channels, bool):
        raise ValueError(f"{label}: img_channels must be an integer, not {type(channels).__name__}.")
    arch = {
        "class": kwargs.pop("model_type", _EDM_DEFAULT_MODEL[kind]),
        "img_resolution": kwargs.pop("img_resolution"),
        "in_channels": channels,
        "out_channels": channels * (2 if kind == "iddpm" else 1),
        "label_dim": kwargs.pop("label_dim", 0),
        **kwargs,
    }
    return build_denoiser(kind, arch, precond_kwargs, device=device, label=label)
