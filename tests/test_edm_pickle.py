"""The restricted unpickler reads EDM-shaped snapshots and refuses everything that could run code."""
from __future__ import annotations

import collections
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edm_compat import compat_dir_or_skip
from edm_pickle_synth import hostile_pickle, snapshot_bytes, build_ema, write_snapshot
from explorer.models.edm_pickle import ObjectRecord, read_edm_snapshot, read_pickle

COMPAT = compat_dir_or_skip()
FIXTURES = COMPAT / "fixtures"
needs_compat = pytest.mark.skipif(not FIXTURES.is_dir(), reason="edm-compat fixtures not available")


def _fixture(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"][name]
    return manifest, load_file(str(FIXTURES / manifest["weights_file"]))


@needs_compat
def test_fixture_snapshot_reads_back_as_records_with_exact_weights(tmp_path: Path) -> None:
    manifest, weights = _fixture("tiny-songunet-ncsnpp")
    sentinel = tmp_path / "executed"
    source = f"open({str(sentinel)!r}, 'w').close()\n"
    path = write_snapshot(tmp_path / "net.pkl", manifest["precond_class"], manifest["init_kwargs"],
                          weights, source=source)
    data = read_edm_snapshot(path)
    ema = data["ema"]
    assert isinstance(ema, ObjectRecord) and ema.class_name == "EDMPrecond"
    assert ema.init_kwargs == manifest["init_kwargs"]
    assert ema.module_src == source and not sentinel.exists()
    assert ema.children()["model"].class_name == "SongUNet"
    loaded = ema.state_dict()
    assert set(loaded) == set(weights)
    for name, tensor in weights.items():
        assert loaded[name].dtype == torch.float32 and torch.equal(loaded[name], tensor), name
    block = ema.children()["model"].children()["enc"].children()["16x16_block0"]
    assert block.class_name == "UNetBlock" and block.state["skip_scale"] == pytest.approx(0.5 ** 0.5)
    assert type(block.state["skip_scale"]) is float  # numpy float64 decoded as a Python number
    assert data["loss_fn"].class_name == "EDMLoss" and data["augment_pipe"] is None


@needs_compat
@pytest.mark.parametrize("torch1", [False, True])
def test_state_dict_order_matches_the_official_listing(tmp_path: Path, torch1: bool) -> None:
    config = json.loads((COMPAT / "state_dicts.json").read_text())["configs"]["cifar10-ddpmpp-cond"]
    tiny = {name: torch.full((1,), float(i)) for i, (name, _, _) in enumerate(config["state_dict"])}
    classes = {m[0]: m[1] for m in config["modules"]}
    path = write_snapshot(tmp_path / "order.pkl", config["precond_class"], config["init_kwargs"], tiny,
                          module_classes=classes, torch1=torch1)
    ema = read_edm_snapshot(path)["ema"]
    assert list(ema.state_dict()) == [entry[0] for entry in config["state_dict"]]
    assert ema.children()["model"].children()["enc"].module == "torch.nn.ModuleDict"


def test_numpy1_scalar_spelling_is_accepted() -> None:
    raw = pickle.dumps({"ema": None, "s": __import__("numpy").float64(0.25)}, protocol=3)
    assert b"numpy._core.multiarray\nscalar" in raw
    old = raw.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
    assert read_pickle(io.BytesIO(old))["s"] == 0.25
    assert read_pickle(io.BytesIO(raw))["s"] == 0.25


@pytest.mark.parametrize("module,name,make_args", [
    ("os", "system", lambda s: [f"touch {s}"]),
    ("posix", "system", lambda s: [f"touch {s}"]),
    ("builtins", "eval", lambda s: [f"open({str(s)!r}, 'w')"]),
    ("builtins", "exec", lambda s: [f"open({str(s)!r}, 'w')"]),
    ("subprocess", "Popen", lambda s: [["touch", str(s)]]),
    ("torch", "load", lambda s: [str(s)]),
    ("training.networks", "EDMPrecond", lambda s: []),
])
def test_hostile_global_is_refused_by_name_and_nothing_runs(tmp_path: Path, module, name, make_args) -> None:
    sentinel = tmp_path / "pwned"
    raw = hostile_pickle(module, name, make_args(sentinel))
    # the payload does work with the ordinary unpickler, so the test would notice a leak
    if module in ("os", "posix", "builtins", "subprocess"):
        proc = pickle.loads(raw)["ema"]
        if hasattr(proc, "wait"):
            proc.wait()
        assert sentinel.exists()
        sentinel.unlink()
    (tmp_path / "bad.pkl").write_bytes(raw)
    with pytest.raises(ValueError, match=rf"refusing to load.*{module}\.{name}"):
        read_edm_snapshot(tmp_path / "bad.pkl")
    assert not sentinel.exists()


class _Evil:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_hostile_object_deep_inside_a_real_snapshot_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "pwned"
    weights = {"model.map_layer0.weight": torch.ones(2, 2)}
    ema = build_ema("training.networks.EDMPrecond", {"model_type": "SongUNet"}, weights)
    ema.state["_init_kwargs"]["model_channels"] = _Evil(sentinel)
    (tmp_path / "evil.pkl").write_bytes(snapshot_bytes(ema))  # protocol 4: STACK_GLOBAL
    with pytest.raises(ValueError, match=r"asks for (os|posix)\.system"):
        read_edm_snapshot(tmp_path / "evil.pkl")
    assert not sentinel.exists()


def test_allowed_functions_cannot_be_patched_by_build() -> None:
    raw = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x03\x00\x00\x00_fnNs\x86b."
    with pytest.raises(ValueError, match="refusing to load"):
        read_pickle(io.BytesIO(raw))
    raw = b"\x80\x02ctorch.nn.modules.container\nModuleDict\nN}X\x07\x00\x00\x00__new__Ns\x86b."
    with pytest.raises(ValueError):
        read_pickle(io.BytesIO(raw))
    # both still work afterwards
    assert read_pickle(io.BytesIO(pickle.dumps(torch.arange(3.0)))).tolist() == [0.0, 1.0, 2.0]
    container = read_pickle(io.BytesIO(pickle.dumps(torch.nn.ModuleDict())))
    assert isinstance(container, ObjectRecord) and container.class_name == "ModuleDict"


class _Overreach:
    def __reduce__(self):
        storage = torch.arange(4.0).untyped_storage()
        typed = torch.storage.TypedStorage(wrap_storage=storage, dtype=torch.float32, _internal=True)
        return (torch._utils._rebuild_tensor_v2, (typed, 2, (100,), (1,), False, collections.OrderedDict()))


def test_tensor_reaching_beyond_its_storage_is_refused() -> None:
    with pytest.raises(ValueError, match="beyond its storage"):
        read_pickle(io.BytesIO(pickle.dumps(_Overreach(), protocol=4)))


def test_persistent_ids_are_refused() -> None:
    raw = b"\x80\x02X\x01\x00\x00\x00xQ."  # BINPERSID
    with pytest.raises(ValueError, match="persistent ids"):
        read_pickle(io.BytesIO(raw))


@pytest.mark.parametrize("payload,message", [
    (pickle.dumps([1, 2, 3], protocol=4), "holds a list"),
    (pickle.dumps({"G_ema": 1, "D": 2}, protocol=4), "no 'ema' network.*'G_ema'"),
    (pickle.dumps({"ema": {"weights": 1}}, protocol=4), "'ema' is a dict"),
    (b"network weights, honestly\n", "not a Python pickle"),
    (b"", "not a Python pickle"),
])
def test_wrong_content_gives_a_clear_error(tmp_path: Path, payload: bytes, message: str) -> None:
    (tmp_path / "x.pkl").write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        read_edm_snapshot(tmp_path / "x.pkl")


def test_truncated_snapshot_is_reported(tmp_path: Path) -> None:
    weights = {"model.map_layer0.weight": torch.randn(8, 8), "model.map_layer0.bias": torch.randn(8)}
    raw = snapshot_bytes(build_ema("training.networks.EDMPrecond", {"model_type": "SongUNet"}, weights))
    assert isinstance(read_pickle(io.BytesIO(raw)), dict)
    for cut in (len(raw) // 3, len(raw) - 1):
        (tmp_path / "cut.pkl").write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="truncated or damaged|damaged or unsafe"):
            read_edm_snapshot(tmp_path / "cut.pkl")


def test_torch_save_archive_is_named_as_such(tmp_path: Path) -> None:
    torch.save({"net": torch.ones(2)}, tmp_path / "training-state-000100.pt")
    assert zipfile.is_zipfile(tmp_path / "training-state-000100.pt")
    with pytest.raises(ValueError, match="zip archive"):
        read_edm_snapshot(tmp_path / "training-state-000100.pt")


def test_easydict_reads_as_a_plain_dict(monkeypatch) -> None:
    import sys
    import types

    class EasyDict(dict):  # shaped like dnnlib.util.EasyDict: attribute access to items
        def __getattr__(self, name):
            return self[name]

    package, module = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    module.EasyDict, package.util = EasyDict, module
    monkeypatch.setitem(sys.modules, "dnnlib", package)
    monkeypatch.setitem(sys.modules, "dnnlib.util", module)
    raw = pickle.dumps({"ema": None, "kwargs": EasyDict(model_channels=128, channel_mult=[2, 2])}, protocol=4)
    assert b"EasyDict" in raw
    monkeypatch.delitem(sys.modules, "dnnlib.util")
    kwargs = read_pickle(io.BytesIO(raw))["kwargs"]
    assert isinstance(kwargs, dict) and kwargs == {"model_channels": 128, "channel_mult": [2, 2]}


def test_invalid_opcode_is_reported_as_damaged() -> None:
    raw = pickle.dumps({"ema": [1, 2, 3]}, protocol=4)
    broken = raw[:20] + b"\xff" + raw[21:]
    with pytest.raises(ValueError, match="truncated or damaged"):
        read_pickle(io.BytesIO(broken))
