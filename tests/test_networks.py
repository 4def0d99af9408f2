"""The clean-room EDM networks against the facts and outputs measured from NVlabs edm.

Data: ``shared/edm-compat`` (state dicts of every released configuration, fixtures with
random weights and the official outputs). Set ``EXPLORER_EDM_COMPAT`` to another copy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edm_compat import compat_dir_or_skip

from explorer.models.networks import (
    DhariwalUNet, SongUNet, build_denoiser, build_network, denoiser_from_edm_kwargs, network_arch,
)


COMPAT = compat_dir_or_skip()
CONFIGS = json.loads((COMPAT / "state_dicts.json").read_text())["configs"]
FIXTURES = json.loads((COMPAT / "fixtures" / "manifest.json").read_text())["fixtures"]


def rel_err(a, b) -> float:
    """max |a − b| / max |b|, the README's measure."""
    a = np.asarray(torch.as_tensor(a).detach().double())
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# ------------------------------------------------------------------ every released configuration

@pytest.mark.parametrize("key", list(CONFIGS))
def test_official_configuration_has_the_exact_state_dict(key):
    config = CONFIGS[key]
    net = denoiser_from_edm_kwargs(config["precond_class"], config["init_kwargs"], device="meta")
    got = [[name, list(t.shape)] for name, t in net.state_dict().items()]
    assert got == [[name, shape] for name, shape, _ in config["state_dict"]]
    assert [name for name, _ in net.named_buffers()] == config["buffers"]
    assert sum(p.numel() for p in net.parameters()) == config["num_params"]
    assert all(t.dtype == torch.float32 for t in net.state_dict().values())


@pytest.mark.parametrize("key", ["cifar10-ncsnpp-cond", "imagenet64-adm-cond", "ffhq64-ddpmpp-uncond"])
def test_module_tree_matches_official_classes_and_attributes(key):
    config = CONFIGS[key]
    net = denoiser_from_edm_kwargs(config["precond_class"], config["init_kwargs"], device="meta")
    ours = dict(net.named_modules())
    official = [m for m in config["modules"] if m[0].startswith("model")]
    assert [m[0] for m in official] == [p for p in ours if p.startswith("model")]
    for path, cls_name, attrs, *_ in official:
        module = ours[path]
        assert type(module).__name__ == cls_name, path
        for attr, value in attrs.items():
            if value is None:  # absent submodule / parameter
                assert getattr(module, attr) is None, (path, attr)
            elif attr != "resample_filter":
                assert getattr(module, attr) == pytest.approx(value), (path, attr)


# ------------------------------------------------------------------ fixtures: official outputs

def _load_fixture(key: str):
    spec = FIXTURES[key]
    net = denoiser_from_edm_kwargs(spec["precond_class"], spec["init_kwargs"])
    net.load_state_dict(load_file(COMPAT / "fixtures" / spec["weights_file"]), strict=True)
    data = dict(np.load(COMPAT / "fixtures" / spec["data_file"]))
    return net.eval(), data


def _inputs(data):
    x = torch.from_numpy(data["x"])
    sigma = torch.from_numpy(data["sigma"])
    labels = torch.from_numpy(data["class_labels"]) if "class_labels" in data else None
    aug = torch.from_numpy(data["augment_labels"]) if "augment_labels" in data else None
    return x, sigma, labels, aug


def _cases():
    for key, spec in FIXTURES.items():
        yield key, ""
        if spec["augment_labels"]:
            yield key, "_aug"


@pytest.mark.parametrize("key,suffix", list(_cases()))
@torch.no_grad()
def test_fixture_float64_matches_reference(key, suffix):
    net, data = _load_fixture(key)
    x, sigma, labels, aug = _inputs(data)
    aug = aug if suffix else None
    net = net.double()
    c_skip, c_out, c_in, c_noise = net.coefficients(sigma)
    for name, c in zip(("c_skip", "c_out", "c_in", "c_noise"), (c_skip, c_out, c_in, c_noise)):
        assert rel_err(c, data[name + "_f64"]) < 1e-13, name
    col = lambda c: c.reshape(-1, 1, 1, 1)  # noqa: E731
    labels64 = None if labels is None else labels.double()
    F = net.network_output(col(c_in) * x.double(), c_noise, labels64, None if aug is None else aug.double())
    assert rel_err(F, data["F_f64" + suffix]) < 1e-10
    D = net(x.double(), sigma, labels, augment_labels=aug)
    assert D.dtype == torch.float64
    assert rel_err(D, data["D_f64" + suffix]) < 1e-10
    assert rel_err(col(c_skip) * x.double() + col(c_out) * F, data["D_f64" + suffix]) < 1e-10


@pytest.mark.parametrize("key,suffix", list(_cases()))
@torch.no_grad()
def test_fixture_float32_matches_official_forward(key, suffix):
    net, data = _load_fixture(key)
    x, sigma, labels, aug = _inputs(data)
    D = net(x, sigma.float(), labels, augment_labels=aug if suffix else None)
    assert D.dtype == torch.float32
    assert rel_err(D, data["D_f32" + suffix]) < 1e-5


@pytest.mark.parametrize("key", [k for k, s in FIXTURES.items() if s["class_label_indices"] is not None])
@torch.no_grad()
def test_fixture_without_labels_uses_zero_labels(key):
    net, data = _load_fixture(key)
    x, sigma, _, _ = _inputs(data)
    assert rel_err(net(x, sigma.float()), data["D_f32_nolabels"]) < 1e-5
    assert rel_err(net.double()(x.double(), sigma), data["D_f64_nolabels"]) < 1e-10


@torch.no_grad()
def test_fixture_catches_a_wrong_weight():
    """The comparison is sharp: perturbing one deep tensor by 1e-3 of its spread is visible."""
    net, data = _load_fixture("tiny-songunet-ddpmpp-3lvl-cond-aug")
    x, sigma, labels, _ = _inputs(data)
    w = net.model.dec["4x4_in0"].qkv.weight
    w += 1e-3 * w.std() * torch.randn(w.shape, generator=torch.Generator().manual_seed(0))
    assert rel_err(net.double()(x.double(), sigma, labels), data["D_f64"]) > 1e-8


# ------------------------------------------------------------------ small networks for training

SMALL = dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8], dropout=0.1)


def _small(cls_name: str, channels: int, res: int = 16, **kw):
    arch = {"class": cls_name, "img_resolution": res, "in_channels": channels, "out_channels": channels, **SMALL}
    if cls_name == "DhariwalUNet":
        arch.update(model_channels=64, channel_mult=[1, 1])  # ADM attention needs 64 channels per head
    arch.update(kw)
    torch.manual_seed(0)
    return build_network(arch)


@pytest.mark.parametrize("cls_name,channels,res", [("SongUNet", 1, 32), ("DhariwalUNet", 3, 16)])
def test_small_network_trains(cls_name, channels, res):
    """Gradients reach every used parameter and a few Adam steps lower the loss on a fixed batch."""
    net = build_denoiser("edm", network_arch(_small(cls_name, channels, res, attn_resolutions=[res // 2])))
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(4, channels, res, res, generator=gen) * 2 - 1
    sigma = torch.tensor([0.2, 0.5, 1.0, 2.0])
    noisy = y + sigma.reshape(-1, 1, 1, 1) * torch.randn(y.shape, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    net.train()
    for _ in range(6):
        torch.manual_seed(2)  # same dropout masks every step: a deterministic objective
        loss = ((net(noisy, sigma) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    unused = {"model.map_augment.weight", "model.map_label.weight", "model.map_label.bias"}
    for name, p in net.named_parameters():
        if name not in unused:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, name
    assert losses[-1] < 0.97 * losses[0]


@pytest.mark.parametrize("channels", [1, 3])
def test_small_32px_config_for_fashion_mnist_and_emoji(channels):
    """The configuration planned for the shipped 32x32 models builds and runs."""
    net = _small("SongUNet", channels, 32, model_channels=32, channel_mult=[1, 2, 2], num_blocks=2,
                 attn_resolutions=[16])
    assert net.enc["16x16_block0"].num_heads == 1 and net.enc["32x32_block0"].num_heads == 0
    with torch.no_grad():
        assert net(torch.randn(1, channels, 32, 32), torch.randn(1)).shape == (1, channels, 32, 32)


def test_dhariwal_attention_needs_64_channels_per_head():
    net = build_network({"class": "DhariwalUNet", "img_resolution": 8, "in_channels": 3, "out_channels": 3,
                         "model_channels": 32, "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [8]})
    assert net.enc["8x8_block0"].num_heads == 0 and not hasattr(net.enc["8x8_block0"], "qkv")


@pytest.mark.parametrize("encoder,decoder", [("skip", "skip"), ("residual", "standard"), ("standard", "skip")])
def test_songunet_encoder_decoder_variants_run(encoder, decoder):
    net = build_network({"class": "SongUNet", "img_resolution": 16, "in_channels": 3, "out_channels": 3,
                         "model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [8],
                         "encoder_type": encoder, "decoder_type": decoder, "embedding_type": "fourier",
                         "resample_filter": [1, 3, 3, 1]})
    out = net(torch.randn(2, 3, 16, 16), torch.randn(2))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_dropout_is_active_only_in_training():
    net = _small("SongUNet", 1, dropout=0.5)
    x, t = torch.randn(2, 1, 16, 16), torch.randn(2)
    # Give the zero-initialised output layer weight so that dropout reaches the output.
    torch.nn.init.normal_(net.dec["16x16_aux_conv"].weight, std=0.1)
    with torch.no_grad():
        assert torch.equal(net.eval()(x, t), net(x, t))
        net.train()
        assert not torch.allclose(net(x, t), net(x, t))


def test_label_dropout_replaces_labels_by_zeros():
    net = _small("SongUNet", 1, label_dim=10, label_dropout=1.0, dropout=0.0)
    torch.nn.init.normal_(net.dec["16x16_aux_conv"].weight, std=0.1)
    x, t = torch.randn(2, 1, 16, 16), torch.randn(2)
    labels = torch.eye(10)[:2]
    with torch.no_grad():
        zero = net.eval()(x, t, torch.zeros(2, 10))
        assert not torch.allclose(net(x, t, labels), zero)
        assert torch.allclose(net.train()(x, t, labels), zero)


def test_channels_last_gives_the_same_output():
    net = _small("SongUNet", 3).eval()
    torch.nn.init.normal_(net.dec["16x16_aux_conv"].weight, std=0.1)
    x, t = torch.randn(2, 3, 16, 16), torch.randn(2)
    with torch.no_grad():
        ref = net(x, t)
        out = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last), t)
    assert rel_err(out, ref.numpy()) < 1e-5


def test_bf16_autocast_runs_close_to_float32():
    net = _small("DhariwalUNet", 3).eval()
    torch.nn.init.normal_(net.out_conv.weight, std=0.05)
    x, t = torch.randn(2, 3, 16, 16), torch.randn(2)
    with torch.no_grad():
        ref = net(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x, t)
    assert torch.isfinite(out).all()
    assert rel_err(out.float(), ref.numpy()) < 0.1


def test_unknown_settings_are_value_errors():
    with pytest.raises(ValueError, match="network class"):
        build_network({"class": "Transformer"})
    with pytest.raises(ValueError, match="no setting"):
        build_network({"class": "SongUNet", "img_resolution": 8, "in_channels": 1, "out_channels": 1, "depth": 3})
    with pytest.raises(ValueError, match="embedding_type"):
        SongUNet(8, 1, 1, embedding_type="learned")
    with pytest.raises(ValueError, match="class-conditional"):
        DhariwalUNet(8, 3, 3, model_channels=32, channel_mult=[1], num_blocks=0, label_dim=3)(
            torch.randn(1, 3, 8, 8), torch.randn(1))


def test_network_arch_round_trips():
    net = _small("SongUNet", 1)
    arch = network_arch(net)
    assert arch["class"] == "SongUNet" and arch["in_channels"] == 1
    rebuilt = build_network(json.loads(json.dumps(arch)), device="meta")
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == [(k, v.shape) for k, v in net.state_dict().items()]
    with pytest.raises(ValueError):
        network_arch(torch.nn.Linear(2, 2))


def test_positional_frequencies_are_float32_values_whatever_the_dtype_or_build_device():
    """Trained networks saw float32 frequencies; float64 runs use those exact values, also on 'meta' builds."""
    from explorer.models.layers import PositionalEmbedding

    with torch.device("meta"):
        emb = PositionalEmbedding(8, endpoint=True)
    want = (torch.tensor(1e-4, dtype=torch.float32) ** (torch.arange(4, dtype=torch.float32) / 3)).double()
    got = emb.frequencies(torch.device("cpu"), torch.float64)
    assert torch.equal(got, want)
    out = emb(torch.tensor([2.0], dtype=torch.float64))
    assert torch.equal(out, torch.cat([(2 * want).cos(), (2 * want).sin()])[None])
