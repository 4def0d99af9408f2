"""Make the comparison pictures of the README and the Compare tab's screenshots.

    python resources/readme/make_compare_media.py [--model SPEC] [--work DIR]

Without ``--model`` the denoiser is the ideal denoiser (EDM eq. 57) of the first 1000
Fashion-MNIST test images (Debian's ``dataset-fashion-mnist``), written as an ``.npy``
into ``--work``: a closed-form image model that needs no training, so the solvers'
differences are the solvers' alone. Everything is made through the same code paths as
``diffusion-explorer compare`` and ``sweep``; the comparison file written next to the
exports reproduces them.

Writes ``resources/readme/comparison_grid.png``, ``resources/readme/comparison.gif``,
``resources/screenshots/compare_view.png`` and ``resources/screenshots/error_vs_nfe.png``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SOLVERS = "euler,heun,dpm-solver-2,dpm-solver++2m,dpm-solver-3"


def fashion_npy(work: Path, count: int = 1000) -> Path:
    """The first ``count`` Fashion-MNIST test images as 1×32×32 floats in [−1, 1]."""
    from explorer.train.datasets import load_fashion

    path = work / f"fashion{count}.npy"
    if not path.exists():
        images = load_fashion("test").images[:count].numpy().astype(np.float32)
        np.save(path, images)
    return path


def run_cli(args: list[str]) -> None:
    from explorer.cli import main

    code = main(args)
    if code != 0:
        raise SystemExit(f"diffusion-explorer {' '.join(args)} failed with {code}")


def screenshots(model: str, out: Path, sweep_model: str = "ring") -> None:
    """The Compare tab after a run and the reference, grabbed offscreen; then its error-vs-NFE
    plot for a 2-D mixture (the ideal denoiser snaps every sample onto a training image, so
    its errors jump rather than converge smoothly)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, Qt
    from PySide6.QtWidgets import QApplication

    from explorer.core.config import RunConfig
    from explorer.models.loader import load_denoiser
    from explorer.ui.compare_view import CompareView
    from explorer.ui.session import Session

    app = QApplication.instance() or QApplication([])
    base = RunConfig(nfe=10, steps=None, batch=9, seed=3)
    view = CompareView(Session(load_denoiser(model), model, base))
    view.resize(1400, 950)
    view.show()
    for solver in ("euler", "heun", "dpm-solver++2m", "dpm-solver-3"):
        view.add_column(base.replace(solver=solver))

    def wait(start) -> None:
        loop = QEventLoop()
        view.runEnded.connect(loop.quit)
        start()
        loop.exec()
        view.runEnded.disconnect(loop.quit)

    wait(view.run_all)
    wait(view.run_reference)
    view.sync_box.setCurrentIndex(view.sync_box.findData("sigma"))
    view.slider.setValue(int(view.slider.maximum() * 0.55))
    view.plots.setCurrentIndex(2)
    app.processEvents()
    view.grab().save(str(out / "compare_view.png"))
    view = CompareView(Session(load_denoiser(sweep_model), sweep_model, base.replace(batch=64)))
    view.resize(1100, 800)
    view.show()
    for k in range(view.sweep_solvers.count()):
        item = view.sweep_solvers.item(k)
        if item.text() in ("euler", "dpm-solver-3m-taylor"):
            item.setCheckState(Qt.Checked)
    view.sweep_budgets.setText("10,20,40,80,160")
    wait(view.run_sweep)
    app.processEvents()
    view.sweep_plot.resize(900, 600)
    view.sweep_plot.grab().save(str(out / "error_vs_nfe.png"))
    print(view.message.text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a denoiser spec (default: the ideal denoiser of 1000 Fashion-MNIST images)")
    parser.add_argument("--work", default="/tmp/explorer-compare-media", help="scratch folder")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = args.model or str(fashion_npy(work))
    run_cli(["compare", "--model", model, "--solvers", SOLVERS, "--nfe", "10", "--batch", "6", "--seed", "3",
             "--reference-rtol", "1e-6", "--scale", "2", "--out", str(work / "compare")])
    readme, shots = ROOT / "resources" / "readme", ROOT / "resources" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for name in ("comparison_grid.png", "comparison.gif"):
        shutil.copyfile(work / "compare" / name, readme / name)
    screenshots(model, shots)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
