"""Write pickles laid out like NVlabs EDM network snapshots, for tests (no official file is available).

The layout follows ``/work/shared/edm-compat/pickle_structure.md``: a top-level dict
``{ema, loss_fn, augment_pipe, dataset_kwargs}``; every persistent object reduces to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src,
class_name, state}``; ``enc``/``dec`` are real ``torch.nn.ModuleDict`` objects (NEWOBJ + BUILD);
parameters and buffers go through torch's own reducers; some attributes are numpy float64 scalars.
To emit the reconstructor as a global, a stand-in module ``torch_utils.persistence`` is placed in
``sys.modules`` only while pickling.
"""
from __future__ import annotations

import collections
import contextlib
import math
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

BUFFER_NAMES = ("resample_filter", "freqs", "u")
_NETWORKS_SRC = "# stand-in for training/networks.py; a reader must never execute it\nraise SystemExit(3)\n"
_LOSS_SRC = "# stand-in for training/loss.py\nraise SystemExit(4)\n"
_HOOK_KEYS = ("_backward_pre_hooks", "_backward_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
              "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
              "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
              "_load_state_dict_post_hooks")


def _never_called(meta: Any) -> Any:
    raise AssertionError("the stand-in reconstructor must never run")


@contextlib.contextmanager
def _persistence_module() -> Iterator[Any]:
    """Temporarily provide ``torch_utils.persistence._reconstruct_persistent_obj`` for pickling."""
    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    _never_called.__module__, _never_called.__qualname__ = module.__name__, "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _never_called
    package.persistence = module
    saved = {name: sys.modules.get(name) for name in (package.__name__, module.__name__)}
    sys.modules.update({package.__name__: package, module.__name__: module})
    try:
        yield module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


class FakePersistent:
    """Pickles exactly like a ``@persistent_class`` object: REDUCE(reconstructor, (meta,))."""

    def __init__(self, class_name: str, state: dict, source: str = _NETWORKS_SRC) -> None:
        self.class_name, self.state, self.source = class_name, state, source

    def __reduce__(self) -> tuple:
        meta = dict(type="class", version=6, module_src=self.source, class_name=self.class_name,
                    state=self.state)
        return (sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,), None)


def guess_class(path: str, precond: str, model_type: str, embedding: str) -> str:
    """Class of a module path in an EDM network, from its name (matches training/networks.py)."""
    parts = path.split(".") if path else []
    leaf = parts[-1] if parts else ""
    parent = parts[-2] if len(parts) > 1 else ""
    if not parts:
        return precond
    if path == "model":
        return model_type
    if path in ("model.enc", "model.dec"):
        return "ModuleDict"
    if leaf == "map_noise":
        return "FourierEmbedding" if embedding == "fourier" else "PositionalEmbedding"
    if leaf.startswith("map_") or leaf == "affine":
        return "Linear"
    if leaf.startswith("norm") or leaf.endswith("_norm"):
        return "GroupNorm"
    if parent in ("enc", "dec") and "_aux_" not in leaf and not leaf.endswith("_conv"):
        return "UNetBlock"
    return "Conv2d"


def _module_state(cls: str, params: dict, buffers: dict, children: dict, init_kwargs: dict,
                  torch1: bool) -> dict:
    """A torch.nn.Module ``__dict__`` as the persistence wrapper records it."""
    container = collections.OrderedDict if torch1 else dict
    state: dict = {"training": False, "_parameters": container(params), "_buffers": container(buffers),
                   "_non_persistent_buffers_set": set()}
    for key in _HOOK_KEYS:
        state[key] = collections.OrderedDict()
    state["_is_full_backward_hook"] = None
    state["_modules"] = container(children)
    if cls == "UNetBlock":  # numpy float64 scalars, as measured in real snapshots
        state["skip_scale"] = np.float64(math.sqrt(0.5))
        init_kwargs = dict(init_kwargs, skip_scale=np.float64(math.sqrt(0.5)))
    state["_init_args"] = ()
    state["_init_kwargs"] = init_kwargs
    return state


def build_ema(precond_class: str, init_kwargs: dict, state_dict: dict[str, torch.Tensor], *,
              module_classes: Optional[dict[str, str]] = None, torch1: bool = False,
              source: str = _NETWORKS_SRC) -> Any:
    """The ``ema`` object tree (FakePersistent / ModuleDict) holding ``state_dict``'s tensors."""
    precond = precond_class.rsplit(".", 1)[-1]
    model_type = init_kwargs.get("model_type", "SongUNet" if precond != "iDDPMPrecond" else "DhariwalUNet")
    embedding = init_kwargs.get("embedding_type", "positional")
    paths = {""}
    for name in list(state_dict) + ["model.map_noise.x"]:
        parts = name.split(".")[:-1]
        paths.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    classes = {p: (module_classes or {}).get(p) or guess_class(p, precond, model_type, embedding)
               for p in paths}

    def make(path: str) -> Any:
        prefix = path + "." if path else ""
        own = {n[len(prefix):]: t for n, t in state_dict.items()
               if n.startswith(prefix) and "." not in n[len(prefix):]}
        params = {k: torch.nn.Parameter(v.detach().clone(), requires_grad=False)
                  for k, v in own.items() if k not in BUFFER_NAMES}
        buffers = {k: v.detach().clone() for k, v in own.items() if k in BUFFER_NAMES}
        if classes[path] == "Conv2d":
            buffers.setdefault("resample_filter", None)
        child_paths = [p for p in _ordered_paths(state_dict, paths)
                       if p.startswith(prefix) and p != path and "." not in p[len(prefix):]]
        children = {p[len(prefix):]: make(p) for p in child_paths}
        if classes[path] == "ModuleDict":
            container = torch.nn.ModuleDict()
            container._modules = (collections.OrderedDict if torch1 else dict)(children)
            return container
        kwargs = init_kwargs if path == "" else {}
        if path == "model":
            kwargs = {k: v for k, v in init_kwargs.items() if k not in ("model_type", "use_fp16")}
        state = _module_state(classes[path], params, buffers, children, dict(kwargs), torch1)
        return FakePersistent(classes[path], state, source)

    return make("")


def _ordered_paths(state_dict: dict, paths: set) -> list[str]:
    """Module paths in first-use order of the state dict (map_noise first under the model)."""
    order = ["model.map_noise"]
    for name in state_dict:
        parts = name.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            p = ".".join(parts[:i])
            if p not in order:
                order.append(p)
    return [p for p in order if p in paths]


def snapshot_bytes(ema: Any, *, protocol: int = 4, extra: Optional[dict] = None) -> bytes:
    """Pickle a full snapshot dict around ``ema`` as ``training_loop.py`` writes it."""
    loss = FakePersistent("EDMLoss", {"P_mean": -1.2, "P_std": 1.2, "sigma_data": 0.5,
                                      "_init_args": (), "_init_kwargs": {}}, _LOSS_SRC)
    data = {"ema": ema, "loss_fn": loss, "augment_pipe": None,
            "dataset_kwargs": {"class_name": "training.dataset.ImageFolderDataset", "path": "x.zip",
                               "use_labels": False, "xflip": False, "cache": True,
                               "resolution": 16, "max_size": 10}}
    data.update(extra or {})
    with _persistence_module():
        return pickle.dumps(data, protocol=protocol)


def write_snapshot(path: Path, precond_class: str, init_kwargs: dict,
                   state_dict: dict[str, torch.Tensor], **kwargs: Any) -> Path:
    """Write a synthesized ``network-snapshot-*.pkl`` and return its path."""
    tree_options = {k: kwargs.pop(k) for k in ("module_classes", "torch1", "source") if k in kwargs}
    ema = build_ema(precond_class, init_kwargs, state_dict, **tree_options)
    Path(path).write_bytes(snapshot_bytes(ema, **kwargs))
    return Path(path)


def hostile_pickle(module: str, name: str, args: Sequence[Any]) -> bytes:
    """A protocol-2 pickle whose 'ema' is ``module.name(*args)`` (GLOBAL + REDUCE), written by hand."""
    body = pickle.dumps(tuple(args), protocol=2)[2:-1]  # the args tuple's opcodes, without PROTO/STOP
    return (b"\x80\x02}q\x00X\x03\x00\x00\x00emaq\x01c" + module.encode() + b"\n" + name.encode()
            + b"\n" + body + b"R" + b"s.")
