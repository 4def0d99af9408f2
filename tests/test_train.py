"""Training: losses, EMA, one step that learns, and a resume that is bit-for-bit the same run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from explorer.train.datasets import ImageSet
from explorer.train.ema import EMA, ema_beta
from explorer.train.loop import TrainConfig, Trainer, build_denoiser, learning_rate
from explorer.train.loss import EDMLoss, VELoss, VPLoss, make_loss

TINY_ARCH = {"model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4], "dropout": 0.0,
             "channel_mult_emb": 2}


def tiny_data(n: int = 32, channels: int = 1) -> ImageSet:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(n, channels, 8, 8, generator=gen) > 0.5).float() * 2 - 1
    return ImageSet(images=images, name="tiny", hflip=True)


def tiny_config(**kw) -> TrainConfig:
    base = dict(data="tiny", precond="edm", arch=dict(TINY_ARCH), batch=8, lr=2e-3, lr_rampup_kimg=0.016,
                kimg=1000, grid_every_kimg=1e9, log_every_seconds=1e9, ema_halflife_kimg=0.05, name="tiny")
    base.update(kw)
    return TrainConfig(**base)


def test_edm_loss_weight_makes_F_target_unit_weighted():
    # λ(σ) c_out(σ)² = 1 for EDM's preconditioning: the loss on F has unit weight at every σ.
    loss = EDMLoss()
    sigma = torch.tensor([0.002, 0.1, 0.5, 2.0, 80.0])
    c_out = sigma * 0.5 / (sigma**2 + 0.25).sqrt()
    torch.testing.assert_close(loss.weight(sigma) * c_out**2, torch.ones(5))


def test_sigma_distributions_follow_the_spec():
    gen = torch.Generator().manual_seed(0)
    log_sigma = EDMLoss().sample_sigma(200_000, torch.device("cpu"), gen).log()
    assert abs(float(log_sigma.mean()) + 1.2) < 0.02 and abs(float(log_sigma.std()) - 1.2) < 0.02
    vp = VPLoss().sample_sigma(100_000, torch.device("cpu"), gen)
    beta = lambda t: math.sqrt(math.expm1(0.5 * 19.9 * t * t + 0.1 * t))  # noqa: E731
    assert float(vp.min()) >= beta(1e-5) * 0.999 and float(vp.max()) <= beta(1.0) * 1.001
    ve = VELoss().sample_sigma(100_000, torch.device("cpu"), gen)
    assert float(ve.min()) >= 0.02 and float(ve.max()) <= 100.0
    assert abs(float(ve.log().mean()) - 0.5 * (math.log(0.02) + math.log(100))) < 0.05  # log-uniform
    torch.testing.assert_close(VPLoss().weight(torch.tensor([2.0])), torch.tensor([0.25]))
    with pytest.raises(ValueError, match="precond"):
        make_loss("iddpm")


def test_perfect_denoiser_has_zero_loss_and_noise_scales_with_sigma():
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    for loss in (EDMLoss(), VPLoss(), VELoss()):
        assert float(loss(lambda x, s, l: images, images).abs().max()) == 0.0
    # the identity "denoiser" has error σ² per pixel, so its λ-weighted loss is λ σ² (= 1 for VP/VE).
    gen = torch.Generator().manual_seed(1)
    big = torch.zeros(4096, 1, 8, 8)
    per_sample = VELoss()(lambda x, s, l: x, big, generator=gen)
    assert abs(float(per_sample.mean()) - 1.0) < 0.05


def test_ema_beta_and_update():
    # half-life of 1000 images, batch 100: after 10 steps the old weights have weight 1/2.
    assert ema_beta(100, 10**9, 1000, None) ** 10 == pytest.approx(0.5)
    assert ema_beta(100, 1000, 1e6, 0.05) == pytest.approx(0.5 ** (100 / 50))  # ramp-up caps the half-life
    live = torch.nn.Linear(2, 2)
    ema = EMA(live, halflife_images=100, rampup=None)
    start = ema.module.weight.clone()
    with torch.no_grad():
        live.weight.add_(1.0)
    beta = ema.update(live, batch=100, images_seen=10**6)
    torch.testing.assert_close(ema.module.weight, beta * start + (1 - beta) * live.weight)
    assert not ema.module.weight.requires_grad


def test_learning_rate_warms_up_linearly():
    cfg = tiny_config(lr=1e-3, lr_rampup_kimg=10)
    assert learning_rate(cfg, 0) == 0 and learning_rate(cfg, 5000) == pytest.approx(5e-4)
    assert learning_rate(cfg, 10**6) == 1e-3


@pytest.mark.parametrize("precond", ["edm", "vp", "ve"])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(precond):
    torch.manual_seed(0)
    net = build_denoiser(precond, TINY_ARCH, (1, 8, 8))
    loss_fn = make_loss(precond)
    images = tiny_data(16).images
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def fixed_loss():
        return loss_fn(net, images, None, torch.Generator().manual_seed(5)).mean()

    before = fixed_loss()
    opt.zero_grad()
    before.backward()
    before = before.detach()
    opt.step()
    with torch.no_grad():
        after = fixed_loss()
    assert float(after) < float(before)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_state_saves_resumes_and_continues_bit_for_bit(tmp_path: Path):
    data = tiny_data()
    straight = Trainer(tiny_config(), tmp_path / "a", device="cpu", data=data, log=lambda s: None)
    straight.run(max_steps=4)

    first = Trainer(tiny_config(), tmp_path / "b", device="cpu", data=data, log=lambda s: None)
    first.run(max_steps=2)
    saved_net, saved_ema = _weights(first.net), _weights(first.ema.module)
    resumed = Trainer(tiny_config(), tmp_path / "b", device="cpu", data=data, log=lambda s: None)
    resumed.load_state()
    for k, v in saved_net.items():
        assert torch.equal(resumed.net.state_dict()[k], v), k
    for k, v in saved_ema.items():
        assert torch.equal(resumed.ema.module.state_dict()[k], v), k
    assert resumed.progress.step == 2 and resumed.progress.nimg == 16
    resumed.run(max_steps=2, resume=True)
    for k, v in _weights(straight.net).items():
        assert torch.equal(resumed.net.state_dict()[k], v), k
    assert resumed.progress.step == 4 and resumed.progress.sessions == 2
    with pytest.raises(ValueError, match="--resume"):
        Trainer(tiny_config(), tmp_path / "b", device="cpu", data=data, log=lambda s: None).run(max_steps=1)


def test_budget_stops_and_export_records_training(tmp_path: Path):
    from explorer.models.checkpoint import load_checkpoint

    lines = []
    trainer = Trainer(tiny_config(kimg=0.04), tmp_path / "run", device="cpu", data=tiny_data(), log=lines.append)
    progress = trainer.run()
    assert progress.nimg == 40 and progress.finished
    assert any("budget reached" in line for line in lines)
    denoiser = load_checkpoint(tmp_path / "run" / "tiny.safetensors")
    x = torch.randn(2, 1, 8, 8)
    sigma = torch.tensor([0.5, 3.0])
    torch.testing.assert_close(denoiser(x, sigma), trainer.ema.module(x, sigma))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["kimg"] == 0.04 and saved["precond"] == "edm"
    assert "stopped (budget reached)" in (tmp_path / "run" / "log.txt").read_text()


def test_deadline_stops_before_it_and_saves(tmp_path: Path, monkeypatch):
    """On a clock of the test's own (every reading 0.05 s later), so no machine is too slow for it."""
    import types

    import explorer.train.loop as loop

    clock = types.SimpleNamespace(now=1.0e9)

    def tick() -> float:
        clock.now += 0.05
        return clock.now

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(time=tick))
    trainer = Trainer(tiny_config(), tmp_path / "run", device="cpu", data=tiny_data(), log=lambda s: None)
    deadline = clock.now + 21.0  # the loop keeps a 20 s margin: about 1 s of (fake) steps
    progress = trainer.run(deadline=deadline)
    assert clock.now < deadline and not progress.finished and progress.step >= 1
    assert (tmp_path / "run" / "state" / "misc-0.safetensors").is_file()


CHECKPOINTS = sorted((Path(__file__).resolve().parents[1] / "checkpoints").glob("*.safetensors"))
EXPECTED = {  # name: (precond, shape, dataset)
    "fashion32-edm": ("edm", [1, 32, 32], "fashion-mnist-train"),
    "fashion32-vp": ("vp", [1, 32, 32], "fashion-mnist-train"),
    "emoji32-edm": ("edm", [3, 32, 32], "noto-color-emoji-32"),
    "fashion32-cond": ("edm", [1, 32, 32], "fashion-mnist-train"),
    "fashion32-edm-guide": ("edm", [1, 32, 32], "fashion-mnist-train"),
}
# The autoguidance guide is the previous fashion32-edm release, unchanged: its metadata names that card.
CARD = {"fashion32-edm-guide": "fashion32-edm.md"}


def test_all_shipped_checkpoints_are_the_expected_ones():
    if not CHECKPOINTS:
        pytest.skip("no checkpoints shipped yet")
    assert {p.stem for p in CHECKPOINTS} == set(EXPECTED)


@pytest.mark.parametrize("path", CHECKPOINTS, ids=[p.stem for p in CHECKPOINTS])
def test_shipped_checkpoint_loads_and_samples(path: Path):
    from explorer.core.config import RunConfig
    from explorer.models.checkpoint import load_checkpoint, read_checkpoint_metadata
    from explorer.train.preview import final_samples

    meta = read_checkpoint_metadata(path)
    precond, shape, dataset = EXPECTED[path.stem]
    assert (meta["precond"], meta["shape"], meta["dataset"]) == (precond, shape, dataset)
    train = meta["train"]
    assert train["images_seen"] == train["steps"] * train["batch"] >= 900_000
    assert train["card"] == CARD.get(path.stem, f"{path.stem}.md") and (path.parent / train["card"]).is_file()
    assert path.stat().st_size < 16 * 2**20
    denoiser = load_checkpoint(path)
    assert tuple(denoiser.shape) == tuple(shape) and denoiser.kind == precond
    x = final_samples(denoiser, RunConfig(solver="heun", steps=8, batch=2, seed=0, device="cpu"))
    assert x.shape == (2, *shape) and bool(torch.isfinite(x).all())
    assert float(x.abs().max()) < 1.5  # the data lie in [-1, 1]; a trained model stays near it


def test_train_command_trains_resumes_and_rejects_bad_data(tmp_path: Path, capsys):
    from explorer.cli import main

    np_images = (torch.rand(6, 8, 8, 3) * 255).to(torch.uint8).numpy()
    import numpy as np

    np.save(tmp_path / "imgs.npy", np_images)
    run = tmp_path / "run"
    tiny = ["--arch-channels", "16", "--arch-mult", "1,2", "--arch-blocks", "1", "--arch-attn", "4",
            "--batch", "4", "--kimg", "0.008", "--grid-every-kimg", "1000", "--device", "cpu"]
    assert main(["train", "--data", str(tmp_path / "imgs.npy"), "--out", str(run), *tiny]) == 0
    assert (run / "run.safetensors").is_file() and (run / "state" / "net-0.safetensors").is_file()
    assert any(p.name.startswith("grid-") for p in run.iterdir())  # the final sample grid
    assert main(["train", "--data", str(tmp_path / "imgs.npy"), "--out", str(run), "--resume", "--kimg", "0.016",
                 "--device", "cpu"]) == 0
    assert json.loads((run / "config.json").read_text())["kimg"] == 0.016
    assert "resumed at step 2" in (run / "log.txt").read_text()
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r2")]) == 2
    assert "no image files" in capsys.readouterr().err


def labelled_data(n: int = 32) -> ImageSet:
    data = tiny_data(n)
    data.labels = torch.arange(n) % 3
    data.class_names = ("a", "b", "c")
    return data


def _losses(trainer: Trainer, steps: int) -> list[float]:
    return [float(trainer.step()) for _ in range(steps)]


def test_fast_path_draws_the_same_batches_and_follows_the_plain_loss_curve(tmp_path: Path):
    # fast: uint8 data on the device, flips there, channels-last; plain: float data, contiguous.
    data = tiny_data()
    plain = Trainer(tiny_config(), tmp_path / "p", device="cpu", data=data, log=lambda s: None)
    fast = Trainer(tiny_config(fast=True, log_every_steps=3), tmp_path / "f", device="cpu", data=data,
                   log=lambda s: None)
    assert fast.stream.images.dtype == torch.uint8 and plain.stream.images.dtype == torch.float32
    assert fast.channels_last and not plain.channels_last
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    fast.stream.generator, plain.stream.generator = gen_a, gen_b
    assert torch.equal(fast.stream.next(), plain.stream.next())  # bit-identical batches
    fast.stream.generator, plain.stream.generator = fast.generator, plain.generator
    a, b = _losses(plain, 8), _losses(fast, 8)
    assert max(abs(x - y) / abs(x) for x, y in zip(a, b)) < 1e-3, (a, b)


def test_split_state_resumes_bit_for_bit(tmp_path: Path, monkeypatch):
    import explorer.train.state as st

    monkeypatch.setattr(st, "PIECE_LIMIT", 256 * 1024 + 12_000)  # ~12 kB per piece: many pieces, sliced tensors
    data = labelled_data()
    config = tiny_config(cond=True, label_dropout=0.3, fast=True)
    straight = Trainer(config, tmp_path / "a", device="cpu", data=data, log=lambda s: None)
    straight.run(max_steps=5)
    first = Trainer(config, tmp_path / "b", device="cpu", data=data, log=lambda s: None)
    first.run(max_steps=2)
    files = sorted((tmp_path / "b" / "state").glob("*.safetensors"))
    assert all(f.stat().st_size <= st.PIECE_LIMIT for f in files)
    roles = {f.stem.rsplit("-", 1)[0] for f in files}
    assert roles == {"net", "ema", "adam-m", "adam-v", "misc"} and len(files) > 2 * len(roles)
    resumed = Trainer(config, tmp_path / "b", device="cpu", data=data, log=lambda s: None)
    resumed.run(max_steps=3, resume=True)
    for mine, theirs in ((resumed.net, straight.net), (resumed.ema.module, straight.ema.module)):
        for k, v in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[k], v), k
    for s_mine, s_theirs in zip(resumed.opt.state_dict()["state"].values(), straight.opt.state_dict()["state"].values()):
        assert all(torch.equal(s_mine[k], s_theirs[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert torch.equal(resumed.generator.get_state(), straight.generator.get_state())
    assert resumed.progress.nimg == straight.progress.nimg == 40


def test_split_and_join_tensors_round_trip():
    from explorer.train.state import join_tensors, split_tensors

    tensors = {"big": torch.arange(50_000, dtype=torch.float32).reshape(100, 500), "small": torch.ones(3),
               "bytes": torch.arange(7, dtype=torch.uint8)}
    pieces = split_tensors(tensors, limit=256 * 1024 + 40_000)
    assert len(pieces) >= 5 and all(sum(t.numel() * t.element_size() for t in p.values()) <= 40_000 for p in pieces)
    flat = {k: v for p in pieces for k, v in p.items()}
    back = join_tensors(flat, {k: list(v.shape) for k, v in tensors.items()})
    assert set(back) == set(tensors) and all(torch.equal(back[k], v) for k, v in tensors.items())
    with pytest.raises(ValueError, match="no room"):
        split_tensors(tensors, limit=1000)


def test_conditional_model_trains_with_label_dropout_and_labels_reach_the_network(tmp_path: Path):
    from explorer.models.checkpoint import load_checkpoint, read_checkpoint_metadata

    trainer = Trainer(tiny_config(cond=True, label_dropout=0.1, kimg=0.024), tmp_path / "c", device="cpu",
                      data=labelled_data(), log=lambda s: None)
    assert trainer.net.label_dim == 3 and trainer.net.model.label_dropout == 0.1
    _, labels = trainer.stream.draw()
    assert labels.shape == (8, 3) and torch.equal(labels.sum(1), torch.ones(8))
    trainer.run()
    path = tmp_path / "c" / "tiny.safetensors"
    meta = read_checkpoint_metadata(path)
    assert meta["label_dim"] == 3 and meta["arch"]["label_dropout"] == 0.1 and meta["train"]["conditional"]
    denoiser = load_checkpoint(path)
    x, sigma = torch.randn(3, 1, 8, 8), torch.full((3,), 1.0)
    outs = [denoiser(x, sigma, torch.tensor([c] * 3)) for c in range(3)]
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[2])
    with pytest.raises(ValueError, match="labelled"):
        Trainer(tiny_config(cond=True), tmp_path / "d", device="cpu", data=tiny_data(), log=lambda s: None)
    with pytest.raises(ValueError, match="--cond"):
        tiny_config(label_dropout=0.1)


def test_compile_failure_falls_back_to_eager_and_early_snapshot_is_exported(tmp_path: Path, monkeypatch):
    from explorer.models.checkpoint import read_checkpoint_metadata

    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Broken())
    lines: list[str] = []
    trainer = Trainer(tiny_config(compile=True, early_minutes=0.0, kimg=0.016), tmp_path / "r", device="cpu",
                      data=tiny_data(), log=lines.append)
    trainer.run()
    assert any("torch.compile failed" in line for line in lines) and trainer.forward is trainer.net
    assert trainer.progress.nimg == 16
    early = read_checkpoint_metadata(tmp_path / "r" / "tiny-early.safetensors")
    assert early["train"]["snapshot"] == "early" and trainer.progress.early_kimg is not None


def test_packed_data_round_trips(tmp_path: Path):
    from explorer.train.datasets import load_dataset, save_packed

    data = labelled_data()
    data.licence, data.name = "CC0", "tiny-set"
    path = save_packed(data, tmp_path / "tiny.npz")
    back = load_dataset(str(path))
    assert torch.equal(back.images, data.images) and torch.equal(back.labels, data.labels)
    assert (back.name, back.licence, back.hflip, tuple(back.class_names)) == ("tiny-set", "CC0", True, ("a", "b", "c"))
    data.images = data.images * 0.3
    with pytest.raises(ValueError, match="8-bit"):
        save_packed(data, tmp_path / "bad.npz")


def test_a_failing_sample_grid_does_not_cost_the_checkpoint(tmp_path: Path):
    def broken_grid(trainer, path):
        raise ImportError("no PNG writer")

    lines: list[str] = []
    Trainer(tiny_config(kimg=0.008), tmp_path / "g", device="cpu", data=tiny_data(), log=lines.append,
            grid_fn=broken_grid).run()
    assert (tmp_path / "g" / "tiny.safetensors").is_file() and any("grid" in s and "failed" in s for s in lines)


def test_clean_and_clip_matches_torch_clipping_and_zeroes_non_finite_entries():
    from explorer.train.loop import clean_and_clip

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, 3, generator=gen) * 4, torch.randn(7, generator=gen)]
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    clean_and_clip(grads, 1.0)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))
    bad = [torch.tensor([float("nan"), float("inf"), 0.5])]
    clean_and_clip(bad, 0.0)
    assert torch.equal(bad[0], torch.tensor([0.0, 0.0, 0.5]))
