"""Guidance in the engine: classifier-free guidance and autoguidance, for every solver."""
from __future__ import annotations

import json

import pytest
import torch

from explorer.cli import main
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.guidance import GuidedDenoiser, guided
from explorer.core.sampling import final_samples, sample_steps
from explorer.core.solvers import SOLVERS
from explorer.models.networks import build_denoiser

ARCH = {"class": "SongUNet", "img_resolution": 8, "in_channels": 1, "out_channels": 1, "model_channels": 16,
        "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
PRECOND = {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0}


def _net(seed: int, label_dim: int = 3):
    """A tiny conditional SongUNet with random weights (the label embedding large enough to matter)."""
    den = build_denoiser("edm", {**ARCH, "label_dim": label_dim}, PRECOND)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return den.eval().requires_grad_(False)


class LabelRecorder(Denoiser):
    """The ideal denoiser of a point mass at a class's mean, recording every label row it is given."""

    def __init__(self, label_dim: int = 3) -> None:
        super().__init__()
        self.shape, self.label_dim, self.name = (2,), label_dim, "recorder"
        self.sigma_min, self.sigma_max = 0.002, 80.0
        self.means = torch.arange(label_dim * 2, dtype=torch.float64).reshape(label_dim, 2) / label_dim
        self.seen: list[torch.Tensor] = []

    def forward(self, x, sigma, labels=None):
        rows = torch.zeros(x.shape[0], self.label_dim, dtype=x.dtype) if labels is None else labels
        self.seen.append(rows.clone())
        return (rows @ self.means.to(x.dtype)).to(x.dtype) + 0 * x


CFG = dict(steps=3, batch=4, seed=1, label=2, device="cpu", fast=False)


@pytest.mark.parametrize("solver", ["heun", "dpm-solver++2m", "dpm-solver-3"])
def test_guidance_one_is_the_unguided_run(solver):
    den = _net(0)
    base = RunConfig(solver=solver, **CFG)
    plain = final_samples(den, base)
    assert torch.equal(final_samples(den, base.replace(guidance=1.0)), plain)
    assert torch.equal(final_samples(den, base.replace(guidance=1.0, guide="no-such-model")), plain)  # w = 1 never loads it
    assert not torch.equal(final_samples(den, base.replace(guidance=2.0)), plain)


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0])
def test_autoguidance_by_the_model_itself_is_the_unguided_run(scale):
    den = _net(0)
    base = RunConfig(solver="heun", **CFG)
    plain = final_samples(den, base)
    assert torch.equal(final_samples(den, base.replace(guidance=scale, guide="itself"), guide=den), plain)
    weaker = _net(5)
    assert not torch.equal(final_samples(den, base.replace(guidance=scale, guide="weak"), guide=weaker), plain)


def test_cfg_at_zero_is_the_unconditional_model_and_extrapolates_linearly():
    den = _net(0)
    x, sigma = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3)), torch.full((4,), 1.5)
    cond = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 1]), 3).float()
    uncond, condl = den(x, sigma, torch.zeros_like(cond)), den(x, sigma, cond)
    assert torch.equal(GuidedDenoiser(den, 0.0)(x, sigma, cond), uncond)
    torch.testing.assert_close(GuidedDenoiser(den, 2.5)(x, sigma, cond), uncond + 2.5 * (condl - uncond))
    assert GuidedDenoiser(den, 2.5).calls_per_eval == 2 and GuidedDenoiser(den, 0.0).calls_per_eval == 1
    base = RunConfig(solver="euler", **CFG)
    assert torch.equal(final_samples(den, base.replace(guidance=0.0)), final_samples(den, base.replace(label=None)))


def test_guidance_errors_are_sentences():
    unconditional = _net(0, label_dim=0)
    with pytest.raises(ValueError, match="class-conditional"):
        guided(unconditional, 2.0)
    with pytest.raises(ValueError, match="needs a class"):
        final_samples(_net(0), RunConfig(solver="euler", **{**CFG, "label": None}, guidance=2.0))
    with pytest.raises(ValueError, match="guide could not be loaded"):
        final_samples(_net(0), RunConfig(solver="euler", **CFG, guidance=2.0, guide="no-such-model"))
    with pytest.raises(ValueError, match="shape"):
        GuidedDenoiser(_net(0), 2.0, LabelRecorder())
    for bad in (-1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="guidance"):
            RunConfig(guidance=bad)
    with pytest.raises(ValueError, match="guide must name"):
        RunConfig(guidance=2.0, guide="  ")


def _config_for(name: str, **kw) -> RunConfig:
    info = SOLVERS[name]
    steps = None if info.adaptive and not info.rule.fixed_grid else 2
    options = {"rtol": 1e-2, "atol": 1e-3} if "rtol" in info.option_names else {}
    return RunConfig(solver=name, steps=steps, options=options, batch=3, seed=0, device="cpu", fast=False, **kw)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_labels_reach_the_network_in_every_solver(name):
    rec = LabelRecorder()
    for _ in sample_steps(rec, _config_for(name, label=1), record_evals=False):
        pass
    assert rec.seen and all(torch.equal(rows, torch.tensor([[0.0, 1.0, 0.0]] * 3, dtype=rows.dtype)) for rows in rec.seen)
    rec.seen.clear()  # per-sample classes and classifier-free guidance: each evaluation asks the null label, then the class
    for _ in sample_steps(rec, _config_for(name, guidance=2.0), labels=torch.tensor([0, 2, 1]), record_evals=False):
        pass
    wanted = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert len(rec.seen) % 2 == 0 and len(rec.seen) >= 2
    for null, rows in zip(rec.seen[::2], rec.seen[1::2]):
        assert not null.any() and torch.equal(rows, wanted.to(rows.dtype))


def test_guidance_flags_round_trip_through_the_config_json(tmp_path, capsys):
    out = tmp_path / "run.safetensors"
    assert main(["sample", "--model", "gaussian", "--steps", "2", "--batch", "2", "--guidance", "1.5",
                 "--guide", "ring", "--out", str(out), "--device", "cpu"]) == 0
    from explorer.core.trajectory import Trajectory

    config = Trajectory.load(out).config
    assert (config.guidance, config.guide) == (1.5, "ring")
    assert RunConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["guidance"] == 1.5
    assert "guided, w = 1.5" in capsys.readouterr().err
    assert main(["sample", "--model", "gaussian", "--steps", "2", "--guidance", "-2", "--out", str(out)]) == 2
    assert "guidance scale" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["sample", "--out", "x.safetensors"], ["compare", "--solvers", "heun,euler", "--out", "d"],
                                     ["sweep", "--solvers", "heun", "--nfe", "5", "--out", "d"]])
def test_every_run_command_has_the_guidance_flags(command):
    from explorer.cli import build_parser
    from explorer.commands.common import config_from_args

    args = build_parser().parse_args([*command, "--guidance", "2.5", "--guide", "fashion32-cond-early", "--label", "4"])
    overrides = {"steps": None, "nfe": 5, "solver": "heun"} if command[0] == "sweep" else {}
    config = config_from_args(args, **overrides)
    assert (config.guidance, config.guide, config.label) == (2.5, "fashion32-cond-early", 4)
    assert RunConfig.from_json(config.to_json()) == config


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_guided_runs_on_the_cuda_fast_path_agree_with_eager():
    den, weak = _net(0).cuda(), _net(5).cuda()
    base = RunConfig(solver="heun", **{**CFG, "device": "cuda"})
    for cfg, guide in ((base.replace(guidance=2.0), None), (base.replace(guidance=2.0, guide="weak"), weak)):
        fast = final_samples(den, cfg.replace(fast=True), guide=guide)
        eager = final_samples(den, cfg, guide=guide)
        torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-4)
