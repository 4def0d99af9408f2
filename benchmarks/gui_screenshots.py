"""The screenshots in resources/screenshots/ that show the Compare tab and the small window.

    python benchmarks/gui_screenshots.py OUTDIR [run]

Writes ``window-1024x640.png`` / ``window-1600x1000.png`` (the default run at both sizes),
``window-ring-restart-1024x640.png`` / ``…-1600x1000.png`` (Restart, 8 steps, batch 64 on the
ring toy: its forward jumps dashed green) and (unless ``run`` is given, which stops there)
``compare-4-columns-x0.png`` / ``compare-4-columns-difference.png`` (heun 5 and 10 steps,
dpm-solver++2m 10, euler 19 on a 3×32×32 Gaussian mixture, batch 16, reference rtol 1e-5,
window 1400×900). Offscreen unless ``$DISPLAY`` is set; no settings are read or written.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gui_latency import image_mixture, settle, wait_for  # noqa: E402

from explorer.core.config import RunConfig  # noqa: E402
from explorer.ui.app import application  # noqa: E402
from explorer.ui.main_window import MainWindow  # noqa: E402
from explorer.ui.settings import AppSettings, open_settings  # noqa: E402

COLUMNS = (("heun", 5), ("heun", 10), ("dpm-solver++2m", 10), ("euler", 19))


def window(app, size: tuple[int, int]) -> MainWindow:
    win = MainWindow(AppSettings(open_settings(str(Path(tempfile.mkdtemp()) / "s.ini"))), autorun=False, remember=False)
    win.resize(*size)
    return win


def run_tab_shots(app, out: Path) -> None:
    """The Run tab after a run, at the smallest supported size and a large one."""
    for spec, config, name in ((None, None, "window"), ("ring", RunConfig(solver="restart", steps=8, batch=64), "window-ring-restart")):
        win = window(app, (1024, 640))
        if spec is not None:
            win.choose_denoiser(spec)
            win.model.load(config)
        win.show()
        settle(app, 300)
        wait_for(win.runEnded, win.start_run)
        for size in ((1024, 640), (1600, 1000)):
            win.resize(*size)
            settle(app, 500)
            win.grab().save(str(out / f"{name}-{size[0]}x{size[1]}.png"))
        win.close()


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    app = application()
    run_tab_shots(app, out)
    if sys.argv[2:] == ["run"]:
        return 0
    win = window(app, (1400, 900))
    win.use_denoiser(image_mixture(64), "mixture32")
    win.show()
    win.tabs.setCurrentWidget(win.compare_view)
    view = win.compare_view
    for solver, steps in COLUMNS:
        view.add_column(RunConfig(solver=solver, steps=steps, batch=16))
    wait_for(view.runEnded, view.run_all)
    view.rtol_box.setCurrentIndex(view.rtol_box.findData(1e-5))
    wait_for(view.runEnded, view.run_reference)
    view.plots.setCurrentIndex(2)
    settle(app, 300)
    win.grab().save(str(out / "compare-4-columns-x0.png"))
    view.view_box.setCurrentIndex(view.view_box.findData("diff"))
    view.slider.setValue(view.slider.maximum() // 2 + 2)
    settle(app, 300)
    win.grab().save(str(out / "compare-4-columns-difference.png"))
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
