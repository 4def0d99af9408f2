"""The GPU training driver's modes, dry-run on the CPU with a tiny net (benchmarks/train_checkpoints.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from explorer.train.datasets import ImageSet, save_packed

from benchmark_scripts import load_benchmark

TINY = "--arch-channels 16 --arch-mult 1,2 --arch-blocks 1 --arch-attn 4 --kimg 0.016"


@pytest.fixture(scope="module")
def driver():
    return load_benchmark("train_checkpoints")


def _packed(folder: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    grey = (torch.rand(24, 1, 8, 8, generator=gen) > 0.5).float() * 2 - 1
    save_packed(ImageSet(grey, torch.arange(24) % 10, name="fashion-mnist-train", class_names=tuple("abcdefghij")),
                folder / "fashion-mnist-train.npz")
    colour = (torch.rand(12, 3, 8, 8, generator=gen) > 0.5).float() * 2 - 1
    save_packed(ImageSet(colour, name="noto-color-emoji-32", hflip=True), folder / "emoji32.npz")
    return folder


def test_dry_run_trains_all_three_then_reports_and_collects(driver, tmp_path: Path, capsys):
    from explorer.models.checkpoint import read_checkpoint_metadata

    data, runs, dest = _packed(tmp_path / "data"), tmp_path / "runs", tmp_path / "OUT"
    common = ["--data", str(data), "--out", str(runs), "--device", "cpu"]
    assert driver.main(["start", *common, "--foreground", "--batch", "8", "--time-limit", "300",
                        "--early-fraction", "0", "--no-compile", "--train-args", TINY]) == 0
    for name in driver.RUNS:
        meta = read_checkpoint_metadata(runs / name / f"{name}.safetensors")
        assert meta["train"]["images_seen"] == 16 and meta["train"]["snapshot"] == "final"
        assert read_checkpoint_metadata(runs / name / f"{name}-early.safetensors")["train"]["snapshot"] == "early"
    assert read_checkpoint_metadata(runs / "fashion32-cond" / "fashion32-cond.safetensors")["label_dim"] == 10
    assert read_checkpoint_metadata(runs / "emoji32-edm" / "emoji32-edm.safetensors")["shape"] == [3, 8, 8]
    capsys.readouterr()
    assert driver.main(["status", *common]) == 0
    report = capsys.readouterr().out
    assert report.count("not running") == 3 and "stopped (budget reached)" in report
    assert driver.main(["collect", *common, "--dest", str(dest)]) == 0
    got = sorted(p.name for p in dest.iterdir())
    assert len(got) == 7 and "training-logs.tar.gz" in got and "fashion32-cond-early.safetensors" in got
    from explorer.train.cards import write_card

    card = write_card(runs / "fashion32-cond" / "fashion32-cond.safetensors", grid=False).read_text()
    assert "class-conditional (10 classes" in card and "| images seen | 16 (0.0 M) |" in card
    assert "autoguidance guide | `fashion32-cond-early.safetensors`" in card
    assert driver.main(["collect", *common, "--dest", str(dest / "s"), "--what", "state:fashion32-cond"]) == 0
    state = sorted(p.name for p in (dest / "s").iterdir())
    assert state[0].startswith("fashion32-cond-") and len(state) == 5 and len(state) <= driver.MAX_FILES
    # a fresh machine: restore the collected state, and start resumes it
    fresh = tmp_path / "fresh"
    assert driver.main(["restore", "--out", str(fresh), "--from", str(dest / "s"), "--runs", "fashion32-cond"]) == 0
    assert driver.main(["start", "--data", str(data), "--out", str(fresh), "--device", "cpu", "--foreground",
                        "--batch", "8", "--time-limit", "300", "--no-compile", "--runs", "fashion32-cond",
                        "--train-args", TINY.replace("0.016", "0.024")]) == 0
    assert "resumed at step 2" in (fresh / "fashion32-cond" / "log.txt").read_text()
    assert read_checkpoint_metadata(fresh / "fashion32-cond" / "fashion32-cond.safetensors")["train"]["steps"] == 3


def test_bench_one_measures_a_tiny_configuration(driver, tmp_path: Path, capsys):
    data = _packed(tmp_path / "data")
    arch = json.dumps({"model_channels": 16, "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4],
                       "dropout": 0.0, "channel_mult_emb": 2})
    assert driver.main(["bench-one", "--config", "fast", "--data", str(data), "--device", "cpu", "--arch", arch,
                        "--batch", "4", "--seconds", "0", "--warmup", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["config"] == "fast" and result["batch"] == 4 and result["images_per_s"] > 0 and result["fast"]
    assert driver._last_json("Traceback ...\nBoom")["error"].endswith("Boom")


def test_collect_refuses_unknown_selections(driver, tmp_path: Path):
    with pytest.raises(SystemExit, match="state:NAME"):
        driver.main(["collect", "--out", str(tmp_path), "--dest", str(tmp_path / "o"), "--what", "everything"])
