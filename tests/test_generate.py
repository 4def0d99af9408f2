"""``generate``: seeds shared over processes (torchrun, gloo on CPU), each seed drawn exactly once and as alone."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.cli import main
from explorer.commands.generate import rank_batches, read_samples, sample_seeds, seed_batches
from explorer.core.config import RunConfig
from explorer.core.sampling import sample
from explorer.models.checkpoint import save_checkpoint
from explorer.models.networks import build_denoiser

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"class": "SongUNet", "img_resolution": 8, "in_channels": 3, "out_channels": 3, "model_channels": 16,
        "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4], "dropout": 0.0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    den = build_denoiser("edm", ARCH, {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0}, name="tiny")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, den.eval(), dataset="toy")
    return path


@pytest.mark.parametrize("seeds,batch", [(list(range(23)), 4), ([0, 1, 2, 7, 8, 30], 2), (list(range(5, 9)), 10)])
def test_batches_do_not_depend_on_the_number_of_processes(seeds, batch):
    batches = seed_batches(seeds, batch)
    assert [s for b in batches for s in b] == seeds
    assert all(len(b) <= batch and b == list(range(b[0], b[0] + len(b))) for b in batches)
    for world in (1, 2, 3, 5):
        shares = [rank_batches(batches, r, world) for r in range(world)]
        drawn = sorted(s for share in shares for b in share for s in b)
        assert drawn == sorted(seeds)
        assert sorted(map(tuple, (b for share in shares for b in share))) == sorted(map(tuple, batches))


def test_bad_seed_lists_are_refused():
    with pytest.raises(ValueError, match="once"):
        seed_batches([1, 2, 1], 4)
    with pytest.raises(ValueError, match="at least 1"):
        seed_batches([1], 0)


def test_a_seed_sample_is_the_sample_run_of_that_seed(checkpoint):
    from explorer.models.loader import load_denoiser

    den = load_denoiser(str(checkpoint))
    cfg = RunConfig(solver="heun", steps=3, batch=1, device="cpu", churn=5.0)  # stochastic: solver noise by seed too
    drawn = sample_seeds(den, cfg, [7, 8, 9])
    alone = sample(den, cfg.replace(seed=7, batch=3), record_evals=False).samples
    assert torch.equal(drawn, alone)


def _generate(checkpoint: Path, out: Path, procs: int) -> subprocess.CompletedProcess:
    args = ["-m", "explorer", "generate", "--model", str(checkpoint), "--seeds", "3-12,20-24", "--batch", "4",
            "--steps", "3", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same CPU kernels in every process
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *args]
    else:
        cmd = [sys.executable, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_torchrun_with_two_gloo_ranks_draws_every_seed_once_as_one_process_does(checkpoint, tmp_path):
    two = _generate(checkpoint, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _generate(checkpoint, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    seeds2, samples2 = read_samples(tmp_path / "two")
    seeds1, samples1 = read_samples(tmp_path / "one")
    expected = list(range(3, 13)) + list(range(20, 25))
    assert seeds2.tolist() == expected and seeds1.tolist() == expected
    assert np.array_equal(samples1, samples2)
    shards = [np.load(tmp_path / "two" / f"shard-0000{r}-of-00002.npz")["seeds"].tolist() for r in range(2)]
    assert sorted(shards[0] + shards[1]) == expected and not set(shards[0]) & set(shards[1])
    pngs = sorted(p.stem for p in (tmp_path / "two" / "images").rglob("*.png"))
    assert pngs == [f"{s:06d}" for s in expected]


def test_read_samples_explains_missing_output(tmp_path):
    with pytest.raises(ValueError, match="generate.json"):
        read_samples(tmp_path)


def test_generate_refuses_a_single_seed_option(checkpoint, tmp_path, capsys):
    code = main(["generate", "--model", str(checkpoint), "--seeds", "0-3", "--seed", "5", "--out", str(tmp_path)])
    assert code == 2 and "--seeds" in capsys.readouterr().err
