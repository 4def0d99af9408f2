"""benchmarks/fd_sweep.py on the CPU: tiny models, a tiny classifier, 2 NFE values."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.core.solvers import SOLVERS
from explorer.models.checkpoint import save_checkpoint
from explorer.models.classifier import FashionClassifier, save_classifier
from explorer.models.networks import build_denoiser
from explorer.train import fd_tables

from benchmark_scripts import load_benchmark

ARCH = {"class": "SongUNet", "img_resolution": 32, "in_channels": 1, "out_channels": 1, "model_channels": 8,
        "channel_mult": [1], "num_blocks": 1, "attn_resolutions": [], "dropout": 0.0}


@pytest.fixture(scope="module")
def sweep():
    return load_benchmark("fd_sweep")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two tiny conditional checkpoints (main and early), a tiny classifier and its 'training' statistics."""
    folder = tmp_path_factory.mktemp("fd")
    for seed, name in ((0, "tiny-cond"), (1, "tiny-cond-early")):
        torch.manual_seed(seed)
        den = build_denoiser("edm", {**ARCH, "label_dim": 10}, {"sigma_data": 0.5}, name=name)
        with torch.no_grad():  # random weights everywhere (EDM zero-initialises the output layers)
            for p in den.parameters():
                p.copy_(torch.randn_like(p) * 0.2)
        save_checkpoint(folder / f"{name}.safetensors", den, dataset="fashion-mnist-train")
    torch.manual_seed(0)
    clf = FashionClassifier(channels=(2, 2, 2), feature_dim=4)
    save_classifier(folder / "clf.safetensors", clf, {"test_accuracy": 0.1})
    feats = np.random.default_rng(0).normal(size=(64, 4))
    np.savez(folder / "stats.npz", mu=feats.mean(0), cov=np.cov(feats, rowvar=False))
    return folder


def _common(files: Path, dest: Path) -> list[str]:
    return ["--model", str(files / "tiny-cond.safetensors"), "--samples", "12", "--batch", "6", "--device", "cpu",
            "--dest", str(dest), "--classifier", str(files / "clf.safetensors"),
            "--reference-stats", str(files / "stats.npz"), "--no-floor"]


def test_solver_names_come_from_the_registry(sweep):
    names = sweep.solver_names(None)
    assert names[-1] == "reference" and set(names) == {n for n, i in SOLVERS.items() if not i.stochastic}
    assert sweep.solver_names("heun, euler") == ["heun", "euler"]
    assert "reference" not in sweep.solver_names(None, "reference") and sweep.solver_names("heun,euler", "euler") == ["heun"]
    with pytest.raises(ValueError, match="Unknown solver"):
        sweep.solver_names("heun,nope")
    assert sweep.solver_spec("heun:alpha=0.5") == ("heun", {"alpha": 0.5}, {})
    assert sweep.solver_spec("unipc-3:variant=bh2:disc=logsnr") == ("unipc-3", {"variant": "bh2"}, {"disc": "logsnr"})
    assert all(sweep.solver_spec(s)[2] == {"disc": "logsnr"} for s in sweep.PRESETS["low-nfe-logsnr"][0].split(","))
    with pytest.raises(ValueError, match="no option"):
        sweep.solver_names("heun:beta=2")


def test_solver_sweep_writes_table_plot_and_resumes(sweep, files, tmp_path, capsys):
    dest = tmp_path / "out"
    args = [*_common(files, dest), "--solvers", "euler,heun:alpha=0.5,dpm-solver-3,dpm-solver-12,reference", "--nfe", "3,4",
            "--rtols", "0.5", "--reference-rtol", "0.1"]
    assert sweep.main(["solvers", *args]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["fd_tiny-cond.json", "fd_tiny-cond.md", "fd_tiny-cond.png"]
    result = json.loads((dest / "fd_tiny-cond.json").read_text())
    rows = {(r["solver"], r["nfe"]): r for r in result["rows"]}
    assert rows[("heun:alpha=0.5", 3)]["fd"] > 0 and rows[("euler", 4)]["nfe_used"] == 4
    assert rows[("dpm-solver-3", 3)]["fd"] is not None  # one third-order step
    assert rows[("reference", None)]["fd"] > 0 and rows[("reference", None)]["nfe_used"] > 4
    assert rows[("dpm-solver-12", None)]["rtol"] == 0.5
    table = (dest / "fd_tiny-cond.md").read_text()
    assert "| heun:alpha=0.5 |" in table and "NFE 3 | NFE 4" in table and "| reference | 0.1 |" in table
    # resuming measures nothing already measured: the rows come back unchanged
    capsys.readouterr()
    assert sweep.main(["solvers", *args, "--resume", str(dest / "fd_tiny-cond.json"), "--dest", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "fd_tiny-cond.json").read_text())
    assert {fd_tables.row_key("solvers", r): r["fd"] for r in again["rows"]} == \
           {fd_tables.row_key("solvers", r): r["fd"] for r in result["rows"]}
    assert '"solver"' not in capsys.readouterr().out.split("FD of")[0]  # no measurement was printed


def test_time_budget_skips_what_does_not_fit(sweep, files, tmp_path):
    dest = tmp_path / "out"
    assert sweep.main(["solvers", *_common(files, dest), "--solvers", "heun", "--nfe", "3,35", "--time-budget", "1e-6"]) == 0
    rows = json.loads((dest / "fd_tiny-cond.json").read_text())["rows"]
    assert rows and all(r["fd"] is None and "time budget" in r["error"] for r in rows)
    assert "—" in (dest / "fd_tiny-cond.md").read_text()


def test_guidance_sweep_measures_fd_and_per_class_accuracy(sweep, files, tmp_path):
    dest = tmp_path / "g"
    assert sweep.main(["guidance", *_common(files, dest), "--solver", "euler", "--guidance-nfe", "2",
                       "--cfg", "0,1,2", "--auto", "2"]) == 0
    result = json.loads((dest / "guidance_tiny-cond.json").read_text())
    assert result["guide"] == "tiny-cond-early"
    rows = {(r["mode"], r["w"]): r for r in result["rows"]}
    assert set(rows) == {("cfg", 0.0), ("cfg", 1.0), ("cfg", 2.0), ("auto", 2.0)}
    for r in rows.values():
        assert r["fd"] > 0 and len(r["per_class"]) == 10 and 0 <= r["accuracy"] <= 1
    assert rows[("cfg", 0.0)]["fd"] != rows[("cfg", 2.0)]["fd"] != rows[("auto", 2.0)]["fd"]
    assert (dest / "guidance_tiny-cond.png").is_file()
    assert "autoguidance" in (dest / "guidance_tiny-cond.md").read_text()


def test_publish_fills_cards_and_readme(sweep, files, tmp_path):
    dest, ckpts = tmp_path / "out", tmp_path / "ckpts"
    assert sweep.main(["solvers", *_common(files, dest), "--solvers", "heun", "--nfe", "3"]) == 0
    ckpts.mkdir()
    (ckpts / "tiny-cond.safetensors").write_bytes((files / "tiny-cond.safetensors").read_bytes())
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- fd-table:tiny-cond -->\nold\n<!-- /fd-table:tiny-cond -->\nend\n")
    assert sweep.main(["publish", str(dest), "--checkpoints", str(ckpts), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and "| heun |" in text and text.endswith("end\n")
    card = (ckpts / "tiny-cond.md").read_text()
    assert "| heun |" in card and "tiny-cond.fd.png" in card and (ckpts / "tiny-cond.fd.png").is_file()
    assert "Guidance: FD and classifier accuracy" in card and "Not measured yet" in card


def test_merge_keeps_measured_rows():
    a = {"kind": "solvers", "model": "m", "samples": 4, "rows": [{"solver": "heun", "nfe": 3, "rtol": None, "fd": 2.0}]}
    b = {"kind": "solvers", "model": "m", "samples": 4, "floor": 0.1,
         "rows": [{"solver": "heun", "nfe": 3, "rtol": None, "fd": None, "error": "skipped: time budget"},
                  {"solver": "euler", "nfe": 3, "rtol": None, "fd": 5.0}]}
    merged = fd_tables.merge([a, b])
    assert merged["floor"] == 0.1 and {r["solver"]: r["fd"] for r in merged["rows"]} == {"heun": 2.0, "euler": 5.0}
    with pytest.raises(ValueError, match="different"):
        fd_tables.merge([a, {**b, "model": "other"}])
