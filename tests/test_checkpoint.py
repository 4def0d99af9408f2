"""The checkpoint format (SPEC §6): round trip, and clear errors for every kind of bad file."""
from __future__ import annotations

import json
import math
import struct

import pytest
import torch
from safetensors.torch import save_file

from explorer.core.precond import EDMPrecond, IDDPMPrecond, VPPrecond
from explorer.models.checkpoint import FORMAT, load_checkpoint, read_checkpoint_metadata, save_checkpoint
from explorer.models.networks import build_denoiser

SONG = {"class": "SongUNet", "img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 16,
        "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4], "dropout": 0.0, "label_dim": 3,
        "embedding_type": "fourier", "encoder_type": "residual", "resample_filter": [1, 3, 3, 1]}
ADM = {"class": "DhariwalUNet", "img_resolution": 8, "in_channels": 3, "out_channels": 6, "model_channels": 16,
       "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [], "dropout": 0.0}


def _randomize(net: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial weights (the zero-initialised output layers would hide mistakes)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return net


def _inputs(net, batch: int = 2):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, *net.shape, generator=gen), torch.tensor([0.05, 3.0])[:batch]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    net = _randomize(build_denoiser("edm", SONG, {"sigma_data": 0.4}, name="tiny-song")).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, net, dataset="toy", train={"steps": 3, "lr": 1e-3}, extra={"note": "test"})
    return net, path


@torch.no_grad()
def test_round_trip_gives_identical_weights_and_outputs(saved):
    net, path = saved
    loaded = load_checkpoint(path)
    assert isinstance(loaded, EDMPrecond) and not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())
    assert (loaded.name, loaded.shape, loaded.label_dim, loaded.sigma_data) == ("tiny-song", (1, 8, 8), 3, 0.4)
    ours, theirs = net.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x, sigma = _inputs(net)
    labels = torch.tensor([2, 0])
    assert torch.equal(net(x, sigma, labels), loaded(x, sigma, labels))
    loaded64 = load_checkpoint(path, dtype=torch.float64)
    assert loaded64(x.double(), sigma.double(), labels).dtype == torch.float64


def test_metadata_is_json_per_key(saved):
    _, path = saved
    meta = read_checkpoint_metadata(path)
    assert meta["format"] == FORMAT and meta["precond"] == "edm" and meta["dataset"] == "toy"
    assert meta["sigma_min"] == 0.0 and math.isinf(meta["sigma_max"]) and meta["sigma_data"] == 0.4
    # Every constructor setting is recorded, defaults included, so later default changes cannot alter a model.
    assert {k: meta["arch"][k] for k in SONG} == SONG and meta["arch"]["channel_mult_emb"] == 4
    assert meta["shape"] == [1, 8, 8] and meta["label_dim"] == 3
    assert meta["train"] == {"steps": 3, "lr": 1e-3} and meta["note"] == "test" and meta["name"] == "tiny-song"


@pytest.mark.parametrize("kind,arch", [("vp", SONG), ("ve", SONG), ("iddpm", ADM)])
@torch.no_grad()
def test_round_trip_of_other_preconditioners(tmp_path, kind, arch):
    torch.manual_seed(0)
    net = _randomize(build_denoiser(kind, arch)).eval()
    save_checkpoint(tmp_path / "m.safetensors", net, dataset="toy")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert (loaded.kind, loaded.sigma_min, loaded.sigma_max) == (kind, net.sigma_min, net.sigma_max)
    assert loaded.name == net.name
    x, sigma = _inputs(net)
    assert torch.equal(net(x, sigma), loaded(x, sigma))
    if kind == "iddpm":
        assert isinstance(loaded, IDDPMPrecond) and list(loaded.state_dict())[0] == "u"


def test_name_falls_back_to_the_file_stem(tmp_path, saved):
    net, path = saved
    meta = read_checkpoint_metadata(path)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    meta.pop("name")
    raw = {k: json.dumps(v if not (isinstance(v, float) and math.isinf(v)) else "inf") for k, v in meta.items()}
    save_file(state, tmp_path / "my-model.safetensors", metadata=raw)
    assert load_checkpoint(tmp_path / "my-model.safetensors").name == "my-model"


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, saved):
    net, _ = saved
    target = tmp_path / "a.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="redefine"):
        save_checkpoint(target, net, dataset="toy", extra={"precond": "ve"})
    assert target.read_bytes() == b"old"
    save_checkpoint(target, net, dataset="toy")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
    with pytest.raises(ValueError, match="preconditioned"):
        save_checkpoint(tmp_path / "b.safetensors", torch.nn.Linear(2, 2), dataset="toy")


# ------------------------------------------------------------------ bad files

def test_not_a_file(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0.2, 0.9, 0.999])
def test_truncated_file(tmp_path, saved, keep):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(cut)


@pytest.mark.parametrize("content", [b"", b"abc", bytes(range(256)) * 40, b"{\"not\": \"safetensors\"}" * 10,
                                     struct.pack("<Q", 12) + b"not json!!!!"])
def test_random_non_safetensors_file(tmp_path, content):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="not a (checkpoint|safetensors file)"):
        load_checkpoint(bad)


def _rewrite(tmp_path, saved, **changes):
    """The saved checkpoint with some metadata keys replaced (None deletes the key)."""
    net, path = saved
    meta = read_checkpoint_metadata(path)
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    raw = {k: json.dumps("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in meta.items()}
    out = tmp_path / "edited.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out, metadata=raw)
    return out


@pytest.mark.parametrize("changes,message", [
    (dict(format="something-else/2"), "not an explorer denoiser checkpoint"),
    (dict(format=None), "not an explorer denoiser checkpoint"),
    (dict(precond="ddim"), "unknown preconditioning"),
    (dict(arch=None), "'arch' is missing"),
    (dict(arch={**SONG, "class": "Transformer"}), "Unknown network class"),
    (dict(arch={**SONG, "depth": 3}), "no setting"),
    (dict(shape=[3, 8, 8]), "does not fit shape"),
    (dict(shape=[1, 8]), "C, H, W"),
    (dict(label_dim=0), "does not fit"),
    (dict(sigma_data=None), "'sigma_data' is missing"),
    (dict(sigma_max="lots"), "'sigma_max' is missing or not a float"),
])
def test_wrong_metadata(tmp_path, saved, changes, message):
    with pytest.raises(ValueError, match=message):
        load_checkpoint(_rewrite(tmp_path, saved, **changes))


def test_metadata_of_a_plain_safetensors_file(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="not an explorer denoiser checkpoint"):
        read_checkpoint_metadata(plain)


def test_weights_that_do_not_match_name_the_first_mismatch(tmp_path, saved):
    net, path = saved
    meta_raw = {k: json.dumps("inf" if isinstance(v, float) and math.isinf(v) else v)
                for k, v in read_checkpoint_metadata(path).items()}
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    cases = {
        "lack tensor 'model.map_noise.freqs'": {k: v for k, v in state.items() if k != "model.map_noise.freqs"},
        "'model.map_layer0.weight' has shape": {**state, "model.map_layer0.weight": torch.zeros(5, 5)},
        "unexpected tensor 'model.extra'": {**state, "model.extra": torch.zeros(1)},
        "dtype I64": {**state, "model.map_layer0.bias": torch.zeros(64, dtype=torch.int64)},
    }
    for message, tensors in cases.items():
        out = tmp_path / "w.safetensors"
        save_file(tensors, out, metadata=meta_raw)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(out)


def test_vp_sigma_range_in_metadata_must_agree(tmp_path):
    torch.manual_seed(0)
    net = build_denoiser("vp", SONG)
    path = tmp_path / "vp.safetensors"
    save_checkpoint(path, net, dataset="toy")
    assert isinstance(load_checkpoint(path), VPPrecond)
    out = _rewrite(tmp_path, (net, path), sigma_max=80.0)
    with pytest.raises(ValueError, match="sigma_max"):
        load_checkpoint(out)
