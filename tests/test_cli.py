"""The command line end to end, in subprocesses: outputs, and one-line errors with exit 2."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from explorer import RunConfig, Trajectory, sample, toy


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_sample_end_to_end_matches_library(tmp_path):
    out, grid = tmp_path / "run.safetensors", tmp_path / "samples.png"
    res = cli("sample", "--model", "moons", "--solver", "dpm-solver++2m", "--steps", "6", "--seed", "3", "--batch", "5",
              "--dtype", "float64", "--out", str(out), "--grid", str(grid))
    assert res.returncode == 0, res.stderr
    traj = Trajectory.load(out)
    expected = sample(toy("moons"), RunConfig(solver="dpm-solver++2m", steps=6, seed=3, batch=5, dtype="float64"))
    assert torch.equal(traj.x, expected.x)
    assert json.loads(traj.metadata()["config"])["solver"] == "dpm-solver++2m"
    assert Image.open(grid).size[0] > 0


def test_sample_with_noise_file_and_gmm_json(tmp_path):
    spec = {"kind": "gmm", "shape": [2, 2], "means": [[0, 0, 1, 1], [1, -1, 0, 2]], "stds": [0.3, 0.2], "weights": [1, 1]}
    (tmp_path / "m.json").write_text(json.dumps(spec))
    noise = np.random.default_rng(0).standard_normal((3, 2, 2))
    np.save(tmp_path / "noise.npy", noise)
    res = cli("sample", "--model", str(tmp_path / "m.json"), "--noise", str(tmp_path / "noise.npy"), "--process", "vp",
              "--disc", "iddpm", "--solver", "lms", "--nfe", "9", "--final", "denoise", "--dtype", "float64",
              "--out", str(tmp_path / "r.npz"))
    assert res.returncode == 0, res.stderr
    traj = Trajectory.load(tmp_path / "r.npz")
    assert traj.nfe == 9 and traj.x.shape == (10, 3, 2, 2) and float(traj.sigma[-1]) == 0
    assert torch.equal(traj.noise, torch.from_numpy(noise))


def test_schedule_and_solvers(tmp_path):
    res = cli("schedule", "--model", "ring", "--process", "vp", "--disc", "vp", "--steps", "4", "--plot", str(tmp_path / "s.svg"))
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line and not line.startswith("#")]
    assert len(rows) == 1 + 5  # header + N + 1 times
    assert (tmp_path / "s.svg").read_text().lstrip().startswith("<?xml")
    res = cli("solvers")
    assert res.returncode == 0 and "dpm-solver++3m-taylor" in res.stdout and "reference" in res.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--rho", "0"], "ρ"),
        (["--sigma-min", "3", "--sigma-max", "1"], "smaller"),
        (["--churn", "-1"], "S_churn"),
        (["--solver", "ddim", "--churn", "2"], "churn applies to euler and heun only"),
        (["--solver", "magic"], "Unknown solver"),
        (["--model", "nonexistent.safetensors"], "No model"),
        (["--solver", "heun", "--nfe", "1", "--final", "sigma_min"], "too small"),
        (["--noise", "missing.npy"], "does not exist"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(tmp_path, args, message):
    res = cli("sample", "--model", "ring", *args, "--out", str(tmp_path / "x.safetensors"), cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr


def test_malformed_model_file(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 10)
    res = cli("sample", "--model", str(bad), "--out", str(tmp_path / "x.safetensors"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
