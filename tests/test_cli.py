"""The command line end to end, in-process through ``main(argv)``: outputs, and one-line errors
with exit 2. One smoke test per entry point starts a real process."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from explorer import RunConfig, Trajectory, sample, toy
from explorer.cli import main


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``diffusion-explorer ARGS`` in this process; returns returncode, stdout, stderr."""

    def run(*args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse's own errors and --help
            code = exit_.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_python_m_explorer_starts_and_answers_in_a_real_process():
    """The smoke test of ``python -m explorer`` (the console script calls the same main)."""
    res = subprocess.run([sys.executable, "-m", "explorer", "solvers"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert "heun" in res.stdout and "Traceback" not in res.stderr


def test_sample_end_to_end_matches_library(cli, tmp_path):
    out, grid = tmp_path / "run.safetensors", tmp_path / "samples.png"
    res = cli("sample", "--model", "moons", "--solver", "dpm-solver++2m", "--steps", "6", "--seed", "3", "--batch", "5",
              "--dtype", "float64", "--out", str(out), "--grid", str(grid))
    assert res.returncode == 0, res.stderr
    traj = Trajectory.load(out)
    expected = sample(toy("moons"), RunConfig(solver="dpm-solver++2m", steps=6, seed=3, batch=5, dtype="float64"))
    assert torch.equal(traj.x, expected.x)
    assert json.loads(traj.metadata()["config"])["solver"] == "dpm-solver++2m"
    assert Image.open(grid).size[0] > 0


def test_sample_with_noise_file_and_gmm_json(cli, tmp_path):
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


def test_schedule_and_solvers(cli, tmp_path):
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
        (["--solver", "ddim", "--churn", "2"], "churn applies to euler, heun and dpm2 only"),
        (["--solver", "magic"], "Unknown solver"),
        (["--model", "nonexistent.safetensors"], "No model"),
        (["--solver", "heun", "--nfe", "1", "--final", "sigma_min"], "too small"),
        (["--noise", "missing.npy"], "does not exist"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(cli, tmp_path, args, message):
    res = cli("sample", "--model", "ring", *args, "--out", str(tmp_path / "x.safetensors"), cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr


def test_malformed_model_file(cli, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 10)
    res = cli("sample", "--model", str(bad), "--out", str(tmp_path / "x.safetensors"))
    assert res.returncode == 2 and "Traceback" not in res.stderr


def _image_mixture(path):
    spec = {"kind": "gmm", "shape": [1, 8, 8], "means": [[0.5] * 64, [-0.5] * 64], "stds": [0.2, 0.2], "weights": [1, 1]}
    path.write_text(json.dumps(spec))
    return path


def test_sample_grid_of_small_images_is_at_least_512_px_across(cli, tmp_path):
    model = _image_mixture(tmp_path / "img.json")
    res = cli("sample", "--model", str(model), "--steps", "3", "--batch", "16", "--out", str(tmp_path / "r.safetensors"),
              "--grid", str(tmp_path / "g.png"))
    assert res.returncode == 0, res.stderr
    width, height = Image.open(tmp_path / "g.png").size
    assert width >= 512 and height >= 512  # 4 × 4 tiles of 8 px, each drawn 16 times larger
    res = cli("sample", "--model", "ring", "--steps", "3", "--batch", "16", "--out", str(tmp_path / "p.safetensors"),
              "--grid", str(tmp_path / "p.png"))
    assert res.returncode == 0, res.stderr
    assert min(Image.open(tmp_path / "p.png").size) >= 512  # 2-D points: one panel, drawn larger


def test_ctrl_c_during_a_run_exits_130_with_one_line_and_writes_nothing(cli, tmp_path, monkeypatch):
    from explorer.core.analytic import GMMDenoiser

    calls = {"n": 0}
    forward = GMMDenoiser.forward

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(GMMDenoiser, "forward", interrupted)
    out = tmp_path / "run.safetensors"
    res = cli("sample", "--model", "ring", "--steps", "10", "--out", str(out), "--grid", str(tmp_path / "g.png"))
    assert res.returncode == 130 and calls["n"] == 3
    assert res.stderr.strip().splitlines() == ["diffusion-explorer: interrupted"]
    assert list(tmp_path.iterdir()) == []  # neither the run, nor the picture, nor a temporary


@pytest.mark.parametrize("args,message", [
    (["--sigma-max", "1e200"], "σ_max must lie between"), (["--sigma-max", "1e300"], "σ_max must lie between"),
    (["--alpha", "1e-300"], "α must satisfy"), (["--nfe", "1000000000000"], "would cost 1000000000000 network evaluations"),
    (["--steps", "60000"], "would cost 119999 network evaluations"), (["--seed", str(2**63)], "2⁶³"),
    (["--epsilon-s", "1e-300"], "ε_s"), (["--s-noise", "1e300"], "S_noise"),
])
def test_numeric_extremes_are_refused_with_a_sentence_before_the_run(cli, tmp_path, args, message):
    res = cli("sample", "--model", "ring", "--solver", "heun", *args, "--out", str(tmp_path / "x.safetensors"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_an_absurd_seed_range_before_allocating(cli, tmp_path):
    res = cli("generate", "--model", "ring", "--seeds", "0-99999999999", "--steps", "2", "--out", str(tmp_path / "g"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "100000000000 seeds" in lines[0], lines
    res = cli("generate", "--model", "ring", "--seeds", f"{2**63}", "--steps", "2", "--out", str(tmp_path / "g"))
    assert res.returncode == 2 and "at most 2⁶³ − 1" in res.stderr
    assert not (tmp_path / "g").exists()


def test_help_and_solvers_import_neither_torch_nor_scipy():
    script = (
        "import sys, contextlib, io\n"
        "from explorer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    for argv in (['--help'], ['compare', '--help'], ['export', '--help']):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    assert main(['solvers']) == 0\n"
        "import explorer\n"
        "print(sorted(m for m in ('torch', 'scipy', 'numpy', 'PySide6') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_the_help_lines_are_the_commands_own():
    import argparse
    import importlib

    from explorer.cli import COMMANDS

    for name, (module, help_line) in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).register(sub)
        assert sub._choices_actions[0].help == help_line, name


def test_a_command_word_after_options_selects_that_command(cli, tmp_path):
    res = cli("--screenshot", "solvers", "sample", "--model", "ring", "--steps", "2", "--out", str(tmp_path / "r.npz"))
    assert res.returncode == 0, res.stderr  # "solvers" is --screenshot's value, "sample" is the command


def test_the_lazy_public_names_resolve():
    import explorer
    import explorer.core

    assert sorted(explorer.__all__) == sorted([*explorer.core.__all__, "__version__"])
    for name in explorer.core.__all__:
        assert getattr(explorer, name) is getattr(explorer.core, name)
    with pytest.raises(AttributeError):
        explorer.no_such_name  # noqa: B018


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`diffusion-explorer solvers | head`: the reader leaves, the command exits 141 without a traceback."""
    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    monkeypatch.setattr("sys.stdout", Closed())
    assert main(["solvers"]) == 141
    assert capsys.readouterr().err == ""
