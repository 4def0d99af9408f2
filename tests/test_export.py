"""Exports: every file opens and has the expected shape; reruns are byte-identical; failed writes leave nothing."""
from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from explorer.cli import main
from explorer.core.analytic import GaussianDenoiser
from explorer.core.compare import Comparison, run_comparison
from explorer.core.config import RunConfig
from explorer.core.sampling import sample
from explorer.core.trajectory import Trajectory
from explorer.export import steps
from explorer.export.bundle import load_bundle, save_bundle
from explorer.export.comparison import export_comparison, export_run
from explorer.export.files import canonical_safetensors, save_image, save_text
from explorer.export.grids import comparison_grid, difference_grid, sample_grid
from explorer.export.options import ExportOptions, read_document, write_document

RANGE = (-1.0, 1.0)


@pytest.fixture(scope="module")
def images() -> GaussianDenoiser:
    return GaussianDenoiser((1, 8, 8), mean=0.0, std=0.5, name="gauss8")


@pytest.fixture(scope="module")
def result(images):
    base = RunConfig(steps=5)
    cmp = Comparison("gauss8", (base, base.replace(solver="euler", steps=7), base.replace(solver="dpm-solver++2m")),
                     seed=2, batch=4, reference_rtol=1e-7)
    return run_comparison(images, cmp)


def test_sample_grid_sizes_padding_labels_and_points(images):
    traj = sample(images, RunConfig(steps=3, batch=6), record_evals=False)
    plain = sample_grid(traj.samples, RANGE, columns=3, pad=2)
    assert plain.size == (3 * (8 + 2) + 2, 2 * (8 + 2) + 2) and plain.mode == "L"
    tight = sample_grid(traj.samples, RANGE, columns=3, pad=0, scale=2)
    assert tight.size == (48, 32)
    labelled = sample_grid(traj.samples, RANGE, columns=3, labels=True)
    assert labelled.width > plain.width and labelled.height > plain.height
    points = sample(GaussianDenoiser((2,)), RunConfig(steps=3, batch=50), record_evals=False)
    assert sample_grid(points.samples, RANGE).mode == "RGB"
    with pytest.raises(ValueError, match="cannot be drawn"):
        sample_grid(torch.zeros(2, 5), RANGE)


def test_comparison_and_difference_grids(result):
    runs = result.finished()
    names = [r.config.solver for r in runs]
    grid = comparison_grid([r.trajectory.samples for r in runs], names, RANGE, labels=False, pad=1)
    assert grid.size == (3 * 9 + 1, 4 * 9 + 1)
    diffs = [r.trajectory.samples.double() - result.reference.trajectory.samples for r in runs]
    diff = difference_grid(diffs, names, labels=False, pad=1)
    assert diff.size == grid.size and diff.mode == "RGB"


def test_too_large_grid_is_refused_with_its_size_or_downscaled(images):
    traj = sample(images, RunConfig(steps=2, batch=16), record_evals=False)
    with pytest.raises(ValueError, match=r"would be 42×42 pixels \(1,764\), more than the 1,000"):
        sample_grid(traj.samples, RANGE, columns=4, pad=2, max_pixels=1000)
    small = sample_grid(traj.samples, RANGE, columns=4, pad=2, max_pixels=1000, downscale=True)
    assert small.width * small.height <= 1000 and small.width < 42
    with pytest.raises(ValueError, match="even with 1-pixel cells"):
        sample_grid(traj.samples, RANGE, columns=4, pad=2, max_pixels=50, downscale=True)


def test_film_strip_and_animation_frames(images, tmp_path):
    traj = sample(images, RunConfig(steps=10, batch=3), record_evals=False)
    assert steps.strip_steps(traj, 4) == [0, 4, 8, 10]
    strip = steps.film_strip(traj, RANGE, every=4, pad=2, labels=False)
    assert strip.size == (4 * 10 + 2, 3 * 10 + 2)
    noisy = steps.film_strip(traj, RANGE, every=5, space="xt", pad=0, labels=False)
    assert noisy.size == (3 * 8, 3 * 8)
    frames = steps.run_frames(traj, RANGE, labels=False, pad=0)
    assert len(frames) == 11
    path = steps.save_gif(frames, tmp_path / "run.gif", fps=5)
    # Pillow merges a frame identical to the one before (here the last x₀ estimate and the final samples)
    distinct = 1 + sum(a.tobytes() != b.tobytes() for a, b in zip(frames, frames[1:]))
    assert distinct >= 10
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == distinct and gif.size == (2 * 8, 2 * 8)
    with pytest.raises(ValueError, match="xt"):
        steps.film_strip(traj, RANGE, space="noise")


def test_export_run_honours_grid_columns(images, tmp_path):
    traj = sample(images, RunConfig(steps=2, batch=6), record_evals=False)
    options = ExportOptions(grid_columns=6, labels=False, pad=1, film_strip=False, animation=False, mp4=False, plots=False)
    report = export_run(traj, tmp_path, RANGE, options, stem="wide")
    assert [p.name for p in report.paths] == ["samples_wide.png", "wide.safetensors"]
    with Image.open(tmp_path / "samples_wide.png") as img:
        assert img.size == (6 * 9 + 1, 9 + 1)


def test_comparison_animation_syncs_by_sigma_or_step(result):
    from explorer.core.compare import sigma_axis

    trajs = [r.trajectory for r in result.finished()]
    by_sigma = steps.comparison_frames(trajs, ["a", "b", "c"], RANGE, labels=False, pad=0)
    assert len(by_sigma) == len(sigma_axis(trajs))
    by_step = steps.comparison_frames(trajs, ["a", "b", "c"], RANGE, labels=False, pad=0, sync="step")
    assert len(by_step) == 8 and by_step[0].size == (3 * 8, 4 * 8)  # the 7-step column sets the length
    with pytest.raises(ValueError, match="sync"):
        steps.comparison_frames(trajs, ["a"], RANGE, sync="time")


def test_mp4_needs_ffmpeg(images, tmp_path, monkeypatch):
    traj = sample(images, RunConfig(steps=2, batch=1), record_evals=False)
    monkeypatch.setattr(steps.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="ffmpeg"):
        steps.save_mp4(steps.run_frames(traj, RANGE), tmp_path / "a.mp4")
    report = export_run(traj, tmp_path, RANGE, ExportOptions(plots=False), stem="one")
    assert any("ffmpeg" in n for n in report.notes)
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_mp4_with_ffmpeg(images, tmp_path):
    traj = sample(images, RunConfig(steps=3, batch=1), record_evals=False)
    path = steps.save_mp4(steps.run_frames(traj, RANGE, scale=4), tmp_path / "a.mp4")
    assert path.stat().st_size > 0 and path.read_bytes()[4:8] == b"ftyp"


def test_every_export_of_a_comparison_opens(result, tmp_path):
    report = export_comparison(result, tmp_path, RANGE, ExportOptions(scale=2))
    names = {p.name for p in report.paths}
    for name in ("comparison.json", "comparison_grid.png", "difference_grid.png", "comparison.gif", "errors.csv",
                 "comparison.safetensors", "reference.safetensors", "sigma.png", "sigma.svg", "trajectories.png",
                 "trajectories.svg", "errors.png", "errors.svg", "samples_01-heun-5steps.png",
                 "filmstrip_02-euler-7steps.png", "animation_03-dpm-solver++2m-5steps.gif", "01-heun-5steps.safetensors"):
        assert name in names, name
    for path in report.paths:
        if path.suffix in (".png", ".gif"):
            with Image.open(path) as img:
                img.verify()
        elif path.suffix == ".svg":
            assert ET.parse(path).getroot().tag.endswith("svg")
    with Image.open(tmp_path / "comparison_grid.png") as grid:
        assert grid.width > 3 * 16 and grid.height > 4 * 16  # 3 solvers × 4 samples of 16 px, plus labels
    traj = Trajectory.load(tmp_path / "02-euler-7steps.safetensors")
    assert traj.x.shape == (8, 4, 1, 8, 8) and traj.denoised.shape == (7, 4, 1, 8, 8) and traj.nfe == 7
    assert traj.eval_x.shape == (7, 4, 1, 8, 8)
    assert torch.equal(traj.x, result.runs[1].trajectory.x)
    with safe_open(str(tmp_path / "reference.safetensors"), "pt") as f:
        assert f.get_tensor("x").dtype == torch.float64
    lines = (tmp_path / "errors.csv").read_text().splitlines()
    assert lines[0] == "column,solver,steps,nfe,error" and lines[2].startswith("2,euler,7,7,")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert oct(os.stat(tmp_path / "errors.csv").st_mode & 0o777) != "0o600"


def test_bundle_round_trip(result, tmp_path):
    path = save_bundle(result, tmp_path / "all.safetensors")
    back = load_bundle(path)
    assert back.comparison == result.comparison and torch.equal(back.noise, result.noise)
    for a, b in zip(back.finished(), result.finished()):
        assert a.config == b.config and torch.equal(a.trajectory.x, b.trajectory.x) and a.trajectory.nfe == b.trajectory.nfe
        assert torch.equal(a.trajectory.eval_x, b.trajectory.eval_x)
    assert torch.equal(back.reference.trajectory.x, result.reference.trajectory.x)
    assert [r["error"] for r in back.table()] == [r["error"] for r in result.table()]
    sample(GaussianDenoiser((2,)), RunConfig(steps=2, batch=1)).save(tmp_path / "run.safetensors")
    with pytest.raises(ValueError, match="not a saved comparison"):
        load_bundle(tmp_path / "run.safetensors")


def test_document_round_trip(result, tmp_path):
    options = ExportOptions(strip_every=3, animation_space="xt", plot_formats=["png"], downscale=True)
    path = write_document(result.comparison, options, tmp_path / "c.json")
    assert read_document(path) == (result.comparison, options)
    (tmp_path / "bare.json").write_text(result.comparison.to_json())
    assert read_document(tmp_path / "bare.json") == (result.comparison, ExportOptions())
    with pytest.raises(ValueError, match="Unknown export option"):
        ExportOptions.from_dict({"colour": True})
    with pytest.raises(ValueError, match="strip_space"):
        ExportOptions(strip_space="z")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_compare_config_round_trip_reproduces_every_file(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["compare", "--model", "gaussian", "--solvers", "heun,euler,dpm-solver-3", "--steps", "4", "--batch", "3",
            "--seed", "9", "--out", str(first)]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "RMSE vs ref" in table and "dpm-solver-3" in table
    assert main(["compare", "--config", str(first / "comparison.json"), "--out", str(second)]) == 0
    a, b = _files(first), _files(second)
    assert set(a) == set(b) and len(a) >= 20
    for name in a:
        assert a[name] == b[name], name
    traj = Trajectory.load(second / "03-dpm-solver-3-4steps.safetensors")
    assert traj.config.seed == 9 and traj.x.shape == (5, 3, 2)


def test_export_command_on_a_run_and_on_a_comparison(tmp_path, result):
    run_file = tmp_path / "run.safetensors"
    assert main(["sample", "--model", "gaussian", "--steps", "3", "--batch", "5", "--out", str(run_file)]) == 0
    assert main(["export", str(run_file), "--out", str(tmp_path / "one"), "--only", "samples,strip,gif"]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["animation_run.gif", "filmstrip_run.png", "samples_run.png"]
    bundle = save_bundle(result, tmp_path / "cmp.safetensors")
    assert main(["export", str(bundle), "--out", str(tmp_path / "all"), "--only", "comparison,difference", "--range=-1,1"]) == 0
    assert {"comparison_grid.png", "difference_grid.png", "comparison.json", "errors.csv"} <= {p.name for p in (tmp_path / "all").iterdir()}
    assert main(["export", str(run_file), "--out", str(tmp_path / "x"), "--only", "movie"]) == 2


def test_failed_writes_leave_no_partial_file(tmp_path, monkeypatch, capsys, images):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    img = Image.new("L", (4, 4))
    with pytest.raises(ValueError, match="does not exist"):
        save_image(img, blocker / "grid.png")
    assert blocker.read_text() == "not a folder"
    # the CLI: one line, exit 2
    assert main(["compare", "--model", "gaussian", "--solvers", "heun", "--steps", "2", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file" in err
    # a write that fails half-way (disk full) leaves neither the file nor its temporary
    target = tmp_path / "out"
    target.mkdir()

    def full_disk(self, fp, *a, **k):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(ValueError, match="Could not write .*grid.png.*No space left"):
        save_image(img, target / "grid.png")
    traj = sample(images, RunConfig(steps=2, batch=1), record_evals=False)
    with pytest.raises(ValueError, match="No space left"):
        export_run(traj, target, RANGE, ExportOptions(plots=False, trajectories=False))
    assert list(target.iterdir()) == []
    monkeypatch.undo()
    save_text("kept", target / "a.txt")
    monkeypatch.setattr(Path, "write_text", lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    with pytest.raises(ValueError, match="Permission denied"):
        save_text("new", target / "a.txt")
    monkeypatch.undo()
    assert (target / "a.txt").read_text() == "kept" and [p.name for p in target.iterdir()] == ["a.txt"]


def test_canonical_safetensors_sorts_the_header(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "t.safetensors"
    save_file({"b": torch.ones(3), "a": torch.zeros(2, 2)}, str(path), metadata={"z": "1", "y": "2", "é": "ü"})
    canonical_safetensors(path)
    n = int.from_bytes(path.read_bytes()[:8], "little")
    header = path.read_bytes()[8:8 + n].decode()
    assert header.index('"y"') < header.index('"z"') and n % 8 == 0
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"z": "1", "y": "2", "é": "ü"} and torch.equal(f.get_tensor("b"), torch.ones(3))
