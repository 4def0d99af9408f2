"""EDM-shaped pickles import as our networks and reproduce the official outputs; convert writes checkpoints."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from edm_compat import compat_dir_or_skip
from edm_pickle_synth import write_snapshot
from explorer.cli import main
from explorer.models.checkpoint import load_checkpoint
from explorer.models.edm_import import convert_edm_pickle, load_edm_pickle
from explorer.models.loader import load_denoiser
from explorer.models.networks import denoiser_from_edm_kwargs
from explorer.models.provenance import file_sha256

COMPAT = compat_dir_or_skip()
FIXTURES = json.loads((COMPAT / "fixtures" / "manifest.json").read_text())["fixtures"]
CONFIGS = json.loads((COMPAT / "state_dicts.json").read_text())["configs"]


def rel_err(a: torch.Tensor, b: np.ndarray) -> float:
    """max |a − b| / max |b| (the measure of edm-compat's README)."""
    a = a.detach().double().numpy()
    return float(np.abs(a - b).max() / np.abs(b).max())


def _fixture_pickle(key: str, tmp_path: Path) -> Path:
    spec = FIXTURES[key]
    weights = load_file(str(COMPAT / "fixtures" / spec["weights_file"]))
    return write_snapshot(tmp_path / f"{key}.pkl", spec["precond_class"], spec["init_kwargs"], weights)


@pytest.mark.parametrize("key", list(FIXTURES))
@torch.no_grad()
def test_synthesized_fixture_pickle_reproduces_official_outputs(key, tmp_path):
    spec = FIXTURES[key]
    path = _fixture_pickle(key, tmp_path)
    data = dict(np.load(COMPAT / "fixtures" / spec["data_file"]))
    x, sigma = torch.from_numpy(data["x"]), torch.from_numpy(data["sigma"])
    labels = torch.from_numpy(data["class_labels"]) if "class_labels" in data else None
    net = load_edm_pickle(path)
    assert type(net).__name__ == spec["precond_class"].rsplit(".", 1)[-1].replace("iDDPM", "IDDPM")
    assert net.label_dim == spec["init_kwargs"]["label_dim"] and not net.training
    assert rel_err(net(x, sigma.float(), labels), data["D_f32"]) < 1e-5
    net64 = net.double()
    assert rel_err(net64(x.double(), sigma, labels), data["D_f64"]) < 1e-10
    info = net.source_info
    assert info["precond_class"] == spec["precond_class"] and info["sha256"] == file_sha256(path)
    assert info["model_class"].endswith(spec["init_kwargs"].get("model_type", "SongUNet"))
    assert info["licence"] == "CC BY-NC-SA 4.0" and net.name == key


@torch.no_grad()
def test_iddpm_pickle_round_trips_with_its_u_buffer(tmp_path):
    kwargs = {"img_resolution": 8, "img_channels": 3, "label_dim": 3, "model_type": "DhariwalUNet",
              "model_channels": 32, "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [], "dropout": 0}
    torch.manual_seed(0)
    ours = denoiser_from_edm_kwargs("training.networks.iDDPMPrecond", kwargs).eval()
    for p in ours.parameters():
        p.add_(torch.randn_like(p) * 0.05)
    state = ours.state_dict()
    assert next(iter(state)) == "u"
    path = write_snapshot(tmp_path / "iddpm.pkl", "training.networks.iDDPMPrecond", kwargs, state)
    net = load_edm_pickle(path)
    x, labels = torch.randn(2, 3, 8, 8), torch.eye(3)[[2, 0]]
    sigma = net.round_sigma(torch.tensor([0.5, 20.0]))
    assert torch.equal(net(x, sigma, labels), ours(x, sigma, labels))
    assert net.sigma_max == pytest.approx(ours.sigma_max) and torch.equal(net.u, ours.u)


@pytest.mark.parametrize("key", ["cifar10-ddpmpp-cond", "cifar10-ncsnpp-uncond-ve", "imagenet64-adm-cond"])
def test_released_configuration_is_recognised_and_wrong_weights_named(key, tmp_path):
    """Kwargs exactly as the official pickles record them build; 1-element weights are refused by name."""
    config = CONFIGS[key]
    tiny = {name: torch.zeros(1) for name, _, _ in config["state_dict"]}
    classes = {m[0]: m[1] for m in config["modules"]} if "modules" in config else None
    path = write_snapshot(tmp_path / "r.pkl", config["precond_class"], config["init_kwargs"], tiny,
                          module_classes=classes)
    first = config["state_dict"][0]
    expected = re.escape(f"wrong shape: {first[0]} [1] (needs {first[1]})")
    with pytest.raises(ValueError, match=f"do not fit.*{expected}"):
        load_edm_pickle(path)


def test_inner_network_class_must_match_the_kwargs(tmp_path):
    spec = FIXTURES["tiny-songunet-ddpmpp"]
    weights = load_file(str(COMPAT / "fixtures" / spec["weights_file"]))
    path = write_snapshot(tmp_path / "m.pkl", spec["precond_class"], spec["init_kwargs"], weights,
                          module_classes={"model": "DhariwalUNet"})
    with pytest.raises(ValueError, match="is DhariwalUNet, but its kwargs describe a SongUNet"):
        load_edm_pickle(path)


def test_other_persistent_networks_are_refused(tmp_path):
    path = write_snapshot(tmp_path / "g.pkl", "training.networks.Generator", {"z_dim": 512},
                          {"mapping.fc0.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="holds a Generator; only EDM preconditioned networks"):
        load_edm_pickle(path)


def test_modified_preconditioner_constants_are_refused(tmp_path):
    from edm_pickle_synth import build_ema, snapshot_bytes

    spec = FIXTURES["tiny-songunet-ddpmpp"]
    weights = load_file(str(COMPAT / "fixtures" / spec["weights_file"]))
    ema = build_ema(spec["precond_class"], spec["init_kwargs"], weights)
    ema.state["sigma_data"] = 0.6  # the kwargs say nothing, so our default 0.5 would be used
    (tmp_path / "m.pkl").write_bytes(snapshot_bytes(ema))
    with pytest.raises(ValueError, match="sigma_data is 0.6 in the pickle but 0.5"):
        load_edm_pickle(tmp_path / "m.pkl")


@torch.no_grad()
def test_convert_writes_a_checkpoint_with_source_licence_and_card(tmp_path):
    key = "tiny-songunet-ddpmpp-3lvl-cond-aug"
    pkl = _fixture_pickle(key, tmp_path)
    out = convert_edm_pickle(pkl, tmp_path / "converted.safetensors")
    with safe_open(str(out), framework="pt") as handle:
        meta = {k: json.loads(v) for k, v in handle.metadata().items()}
    assert meta["precond"] == "edm" and meta["licence"] == "CC BY-NC-SA 4.0"
    assert meta["source"]["sha256"] == file_sha256(pkl)
    assert meta["source"]["precond_class"] == "training.networks.EDMPrecond"
    card = out.with_suffix(".md").read_text()
    assert "CC BY-NC-SA 4.0" in card and file_sha256(pkl) in card
    original, converted = load_edm_pickle(pkl), load_checkpoint(out)
    x, labels = torch.randn(2, 3, 16, 16), torch.eye(10)[[1, 7]]
    sigma = torch.tensor([0.3, 12.0])
    assert torch.equal(converted(x, sigma, labels), original(x, sigma, labels))


def test_cli_convert_and_loader(tmp_path, capsys):
    pkl = _fixture_pickle("tiny-dhariwal", tmp_path)
    out = tmp_path / "dh.safetensors"
    assert main(["convert", str(pkl), str(out)]) == 0
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert main(["convert", str(pkl), str(out)]) == 2  # exists, no --force
    assert "exists" in capsys.readouterr().err
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04K\x01.")
    assert main(["convert", str(tmp_path / "junk.pkl"), str(tmp_path / "j.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a int" in err
    assert load_denoiser(str(pkl)).label_dim == 4
