"""The Compare tab: columns from one latents, background runs, reference and errors, σ sync, sweep, exports.

Qt runs offscreen; the denoisers are 2-D or 8×8 Gaussians so every run takes milliseconds.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math  # noqa: E402
import threading  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("pytestqt")

from explorer.core.analytic import GaussianDenoiser  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.denoiser import Denoiser  # noqa: E402
from explorer.core.trajectory import Trajectory  # noqa: E402
from explorer.session.run import RunSession  # noqa: E402
from explorer.ui.compare_view import CompareView  # noqa: E402
from explorer.ui.session import Session  # noqa: E402

TIMEOUT_MS = 300_000  # a guard against hangs, not a speed limit: under load (2 cores, 10 jobs) one export took 33 s


# Module-level: the tab runs a copy of its denoiser, and the copy must use these too.
OPEN = threading.Event()  # set by the test: the held call may go on
HELD = threading.Event()  # set by the denoiser: the held call has begun (the run is provably mid-way)


class Slow(Denoiser):
    """A Gaussian that can hold its ``hold_at``-th call until ``OPEN`` is set, so a test can look
    at (or cancel) a run that is provably still going, however fast or loaded the machine is."""

    def __init__(self, hold_at: int | None = None) -> None:
        super().__init__()
        self.inner = GaussianDenoiser((2,), std=0.5)
        self.hold_at, self.calls, self.shape, self.name = hold_at, 0, (2,), "slow"
        OPEN.clear()
        HELD.clear()

    def forward(self, x, sigma, labels=None):
        self.calls += 1
        if self.calls == self.hold_at:
            HELD.set()
            OPEN.wait(timeout=TIMEOUT_MS / 1000)
        return self.inner(x, sigma, labels)


def make_view(qtbot, denoiser: Denoiser, spec: str = "gaussian", config: RunConfig = RunConfig(steps=6, batch=4)) -> CompareView:
    session = Session(RunSession(denoiser, spec, config))
    view = CompareView(session)
    qtbot.addWidget(view)
    view.resize(1000, 700)
    return view


def finish(view: CompareView, qtbot, start) -> str:
    with qtbot.waitSignal(view.runEnded, timeout=TIMEOUT_MS) as blocker:
        assert start()
    return blocker.args[0]


def three_columns(view: CompareView) -> None:
    view.add_current()
    view.add_column(RunConfig(solver="euler", steps=12, seed=99, batch=1))
    view.add_column(RunConfig(solver="dpm-solver++2m", steps=6))


def test_columns_run_in_background_from_identical_latents(qtbot):
    view = make_view(qtbot, Slow(hold_at=4), spec="slow")  # held in the first column until OPEN
    three_columns(view)
    assert [c.seed for c in view.columns] == [0, 0, 0] and [c.batch for c in view.columns] == [4, 4, 4]
    with qtbot.waitSignal(view.runEnded, timeout=TIMEOUT_MS) as blocker:
        assert view.run_all()
        assert view.worker.is_running() and not view.run_button.isEnabled() and view.cancel_button.isEnabled()
        qtbot.waitUntil(HELD.is_set, timeout=TIMEOUT_MS)
        # The first step's frame is always posted; the GUI thread draws it while the run is held.
        qtbot.waitUntil(lambda: "step" in view.progress.format(), timeout=TIMEOUT_MS)
        assert view.worker.is_running()
        OPEN.set()
    assert blocker.args == ["finished"]
    noise = [r.trajectory.noise for r in view.runs]
    assert all(torch.equal(n, noise[0]) for n in noise)
    assert [r.trajectory.nfe for r in view.runs] == [11, 12, 6]
    assert [view.table.item(k, 3).text() for k in range(3)] == ["11", "12", "6"]
    assert view.run_button.isEnabled() and not view.cancel_button.isEnabled()
    assert view.session.denoiser.inner.mean.dtype == torch.float64  # the tab ran on its own copy


def test_reference_gives_errors_table_and_difference_view(qtbot):
    view = make_view(qtbot, GaussianDenoiser((1, 8, 8), std=0.5))
    three_columns(view)
    assert finish(view, qtbot, view.run_all) == "finished"
    assert view.table.item(0, 5).text() == ""
    assert finish(view, qtbot, view.run_reference) == "finished"
    assert view.reference.trajectory.x.dtype == torch.float64
    errors = [float(view.table.item(k, 5).text()) for k in range(3)]
    assert all(0 < e < 1 for e in errors)
    assert "RMSE" in view.panels[1].title.full_text()
    view.view_box.setCurrentIndex(view.view_box.findData("diff"))
    image = view.panels[0].image.image
    assert image is not None and image.ndim == 3 and image.shape[-1] == 3  # heat-coloured |difference|
    assert view.plots.error_plot.plot.listDataItems() == []  # a hidden overlay is drawn when shown
    view.plots.setCurrentWidget(view.plots.error_plot)
    assert len(view.plots.error_plot.plot.listDataItems()) == 3


def test_step_control_syncs_by_step_or_by_sigma(qtbot):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5), config=RunConfig(steps=4, batch=8))
    view.add_current()
    view.add_column(RunConfig(solver="euler", steps=16))
    finish(view, qtbot, view.run_all)
    assert view.slider.maximum() == 16
    view.slider.setValue(10)
    assert view.shown_indices() == [4, 10]  # the shorter run holds its last state
    view.sync_box.setCurrentIndex(view.sync_box.findData("sigma"))
    sigmas = [r.trajectory.sigma for r in view.runs]
    for pos in range(view.slider.maximum() + 1):
        view.slider.setValue(pos)
        i, j = view.shown_indices()
        assert float(sigmas[1][j]) == pytest.approx(float(view._axis[pos]), rel=1e-6)
        target = max(float(view._axis[pos]), 1e-12)
        gaps = [abs(math.log(max(float(s), 1e-12)) - math.log(target)) for s in sigmas[0]]
        assert gaps[i] == pytest.approx(min(gaps))  # the 4-step run shows its state nearest in log σ
    assert "σ =" in view.step_label.text()
    view.plots.sigma_plot.axis.setCurrentIndex(view.plots.sigma_plot.axis.findData("t"))  # σ(t) against each column's t
    curves = view.plots.sigma_plot.plot.listDataItems()
    assert len(curves) == 2 and view.plots.sigma_plot.plot.ctrl.logXCheck.isChecked()
    assert list(curves[1].xData) == pytest.approx(list(view.runs[1].trajectory.t[:-1].double().numpy()))


def test_edit_replace_and_remove_columns(qtbot):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5))
    three_columns(view)
    finish(view, qtbot, view.run_all)
    view.table.cellWidget(1, 1).setCurrentText("lms")
    assert view.columns[1].solver == "lms" and view.runs[1] is None and view.runs[0] is not None
    view.table.cellWidget(0, 2).setValue(9)
    assert view.columns[0].steps == 9 and view.runs[0] is None
    view.session.set_config(RunConfig(solver="heun", churn=5.0, steps=6))
    view.table.selectRow(2)
    view.replace_selected()
    assert view.columns[2].churn == 5.0
    view.table.cellWidget(2, 1).setCurrentText("ddim")  # churn is heun's option: ddim starts without it
    assert view.columns[2].solver == "ddim" and "churn" not in view.columns[2].options
    view.table.cellWidget(2, 1).setCurrentText("heun")
    view.table.selectRow(0)
    view.remove_selected()
    assert [c.solver for c in view.columns] == ["lms", "heun"] and len(view.panels) == 2
    view.batch_box.setValue(3)
    assert all(c.batch == 3 for c in view.columns) and all(r is None for r in view.runs)


def test_cancel_keeps_the_finished_columns(qtbot):
    view = make_view(qtbot, Slow(hold_at=8), spec="slow", config=RunConfig(steps=3, batch=2))
    view.add_current()  # heun, 3 steps: 5 calls, so the 8th is in the second column
    view.add_column(RunConfig(solver="euler", steps=200))
    with qtbot.waitSignal(view.runEnded, timeout=TIMEOUT_MS) as blocker:
        view.run_all()
        qtbot.waitUntil(HELD.is_set, timeout=TIMEOUT_MS)
        view.cancel()  # while the second column is held: it cannot have finished
        OPEN.set()
    assert blocker.args == ["cancelled"]
    assert view.runs[0] is not None and view.runs[1] is None


def test_sweep_runs_in_background_and_shows_fitted_orders(qtbot, tmp_path):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5))
    view.plots.sweep_budgets.setText("10,20,40,80")
    assert finish(view, qtbot, view.run_sweep) == "finished"
    legend = view.plots.sweep_plot.legend_texts()
    assert len(legend) == 3 and all("order" in t for t in legend)  # heun, dpm-solver-3, dpm-solver++2m by default
    orders = view.sweep.orders()
    assert orders["heun"] > 1.7 and orders["dpm-solver-3"] > 2.7
    paths = view.save_sweep(tmp_path)
    assert sorted(p.name for p in paths) == ["sweep.csv", "sweep.png", "sweep.svg"]
    view.plots.sweep_budgets.setText("ten")
    assert not view.run_sweep() and "NFE budgets" in view.message.text()


def test_export_everything_and_load_the_comparison_file(qtbot, tmp_path):
    view = make_view(qtbot, GaussianDenoiser((1, 8, 8), std=0.5), spec="gauss8")
    three_columns(view)
    finish(view, qtbot, view.run_all)
    finish(view, qtbot, view.run_reference)
    assert finish(view, qtbot, lambda: view.export_to(tmp_path / "out")) == "finished"
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"comparison.json", "comparison_grid.png", "difference_grid.png", "comparison.gif", "errors.csv",
            "comparison.safetensors", "errors.svg"} <= names
    saved = Trajectory.load(tmp_path / "out" / "01-heun-6steps.safetensors")
    assert torch.equal(saved.x, view.runs[0].trajectory.x)
    other = make_view(qtbot, GaussianDenoiser((1, 8, 8), std=0.5), spec="gauss8")
    other.load_document(tmp_path / "out" / "comparison.json")
    assert other.columns == view.columns and other.seed == view.seed
    wrong = make_view(qtbot, GaussianDenoiser((2,)), spec="gaussian")
    with pytest.raises(ValueError, match="open that denoiser first"):
        wrong.load_document(tmp_path / "out" / "comparison.json")


def test_failed_export_is_reported(qtbot, tmp_path):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5))
    view.add_current()
    finish(view, qtbot, view.run_all)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert finish(view, qtbot, lambda: view.export_to(blocker)) == "failed"
    assert "is a file" in view.message.text() and blocker.read_text() == "x"


def test_new_denoiser_drops_runs_but_keeps_columns(qtbot):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5))
    three_columns(view)
    finish(view, qtbot, view.run_all)
    view.session.set_denoiser(GaussianDenoiser((2,), std=0.3), "other")
    assert len(view.columns) == 3 and all(r is None for r in view.runs) and view.reference is None
    assert "(not run)" in view.panels[0].title.full_text()


def test_main_window_shows_the_compare_tab(qtbot, tmp_path):
    from explorer.ui.main_window import MainWindow
    from explorer.ui.settings import AppSettings, open_settings

    win = MainWindow(AppSettings(open_settings(str(tmp_path / "s.ini"))), denoiser_spec="ring", autorun=False)
    qtbot.addWidget(win)
    assert isinstance(win.compare_view, CompareView)
    assert win.tabs.tabText(win.tabs.indexOf(win.compare_view)) == "Compare"
    win.compare_view.add_current()
    assert win.compare_view.columns[0].solver == win.session.config.solver


# --------------------------------------------------------------------------- the session behind the tab (issue 15)
def test_slider_moves_after_a_four_column_comparison_do_no_tensor_work(qtbot, monkeypatch):
    import threading

    import explorer.session.comparison as sc

    view = make_view(qtbot, GaussianDenoiser((1, 8, 8), std=0.5), config=RunConfig(steps=4, batch=4))
    threads = []
    prepare = sc.ComparisonSession.prepare_column
    monkeypatch.setattr(sc.ComparisonSession, "prepare_column",
                        lambda self, *a, **k: threads.append(threading.current_thread()) or prepare(self, *a, **k))
    for solver in ("heun", "euler", "dpm-solver++2m", "lms"):
        view.add_column(RunConfig(solver=solver, steps=4))
    finish(view, qtbot, view.run_all)
    finish(view, qtbot, view.run_reference)
    assert len(threads) == 4 and threading.main_thread() not in threads  # prepared on the worker
    state = view.state
    built, looked = state.frames_built, state.frame_lookups

    def no_tensors(*_a, **_k):
        raise AssertionError("tensor work on the GUI thread")

    for name in ("state_picture", "data_space", "difference_mosaic", "image_mosaic", "column_error", "points_extent"):
        monkeypatch.setattr(sc, name, no_tensors)
    for key in ("x0", "xt", "diff"):
        view.view_box.setCurrentIndex(view.view_box.findData(key))
        for sync in ("step", "sigma"):
            view.sync_box.setCurrentIndex(view.sync_box.findData(sync))
            for pos in range(view.slider.maximum() + 1):
                view.slider.setValue(pos)
    assert state.frames_built == built and state.frame_lookups > looked + 4 * 3 * 5
    assert view.panels[3].image.image is not None


def test_a_seventeenth_column_is_refused_visibly_and_the_tab_stays_usable(qtbot):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5), config=RunConfig(steps=2, batch=2))
    for _ in range(16):
        assert view.add_current()
    assert not view.add_current()
    assert len(view.columns) == 16 and "at most 16 columns" in view.message.text()
    assert view.run_button.isEnabled() and view.add_button.isEnabled()
    assert finish(view, qtbot, view.run_all) == "finished" and all(r is not None for r in view.runs)


def assert_usable(view: CompareView) -> None:
    assert not view.worker.is_running() and view.job is None
    for button in (view.add_button, view.run_button, view.reference_button, view.plots.sweep_button, view.export_button):
        assert button.isEnabled()
    assert not view.cancel_button.isEnabled() and view.table.isEnabled()


def test_difference_view_without_reference_does_not_lock_the_tab(qtbot):
    view = make_view(qtbot, GaussianDenoiser((1, 8, 8), std=0.5))
    view.view_box.setCurrentIndex(view.view_box.findData("diff"))
    three_columns(view)
    assert finish(view, qtbot, view.run_all) == "finished"
    assert_usable(view)
    assert "press Reference" in view.panels_view.note.text()
    assert finish(view, qtbot, view.run_reference) == "finished"
    assert view.panels[0].image.image is not None and view.panels_view.color_bar.isVisible() is not None


def test_denoiser_switch_mid_comparison_leaves_no_old_results(qtbot):
    view = make_view(qtbot, Slow(hold_at=5), spec="slow", config=RunConfig(steps=40, batch=2))  # held mid-run
    view.add_current()
    view.add_column(RunConfig(solver="euler", steps=3))
    view.view_box.setCurrentIndex(view.view_box.findData("diff"))
    with qtbot.waitSignal(view.runEnded, timeout=TIMEOUT_MS) as blocker:
        view.run_all()
        qtbot.waitUntil(HELD.is_set, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: "step" in view.progress.format(), timeout=TIMEOUT_MS)
        view.session.set_denoiser(GaussianDenoiser((2,), std=0.3), "other")
        OPEN.set()
    assert blocker.args == ["cancelled"]
    qtbot.wait(50)  # any result still queued from the old model arrives now, and is refused
    assert_usable(view)
    assert all(r is None for r in view.runs) and view.reference is None and view.state.model == "other"
    assert all("(not run)" in p.title.full_text() for p in view.panels)


def test_cancel_mid_run_leaves_every_button_usable_and_shows_finished_columns_at_once(qtbot):
    view = make_view(qtbot, Slow(hold_at=8), spec="slow", config=RunConfig(steps=3, batch=2))  # held in column 2
    view.add_current()
    view.add_column(RunConfig(solver="euler", steps=300))
    with qtbot.waitSignal(view.runEnded, timeout=TIMEOUT_MS):
        view.run_all()
        qtbot.waitUntil(HELD.is_set, timeout=TIMEOUT_MS)
        qtbot.waitUntil(lambda: view.runs[0] is not None, timeout=TIMEOUT_MS)  # shown before the run ends
        assert view.worker.is_running() and "step" in view.panels[0].title.full_text()
        view.cancel()
        OPEN.set()
    assert_usable(view)


def test_columns_have_their_own_colours(qtbot):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5))
    for n in (5, 10, 18):
        view.add_column(RunConfig(solver="heun", steps=n))
    swatches = {view.table.item(k, 0).background().color().name() for k in range(3)}
    titles = {p.title.styleSheet() for p in view.panels}
    assert len(swatches) == 3 and len(titles) == 3


def test_columns_scroll_instead_of_widening_the_window(qtbot, tmp_path):
    from explorer.ui.main_window import MainWindow
    from explorer.ui.settings import AppSettings, open_settings

    win = MainWindow(AppSettings(open_settings(str(tmp_path / "s.ini"))), denoiser_spec="ring", autorun=False)
    qtbot.addWidget(win)
    before = win.minimumSizeHint().width()
    for _ in range(7):
        win.compare_view.add_current()
    assert win.minimumSizeHint().width() <= before + 20


def test_gui_and_cli_compare_write_identical_errors_and_files(qtbot, tmp_path):
    from explorer.cli import main
    from explorer.core.analytic import toy

    view = make_view(qtbot, toy("ring"), spec="ring", config=RunConfig(steps=4, batch=4))
    view.add_current()
    view.add_column(RunConfig(solver="euler", steps=6))
    view.rtol_box.setCurrentIndex(view.rtol_box.findData(1e-6))
    finish(view, qtbot, view.run_all)
    finish(view, qtbot, view.run_reference)
    assert finish(view, qtbot, lambda: view.export_to(tmp_path / "gui")) == "finished"
    assert main(["compare", "--config", str(tmp_path / "gui" / "comparison.json"), "--out", str(tmp_path / "cli")]) == 0
    gui, cli = (sorted(p.name for p in (tmp_path / d).iterdir()) for d in ("gui", "cli"))
    assert gui == cli
    for name in ("errors.csv", "comparison.json", "comparison_grid.png"):
        assert (tmp_path / "gui" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()


def test_the_window_fits_1024_by_640(qtbot, tmp_path):
    from explorer.ui.main_window import MainWindow
    from explorer.ui.settings import AppSettings, open_settings

    win = MainWindow(AppSettings(open_settings(str(tmp_path / "s.ini"))), denoiser_spec="ring", autorun=False)
    qtbot.addWidget(win)
    hint = win.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 640


def test_parameter_grid_adds_solvers_by_step_counts_or_refuses_all(qtbot):
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5))
    assert view.add_grid(["euler", "heun"], [3, 5])
    assert [(c.solver, c.steps) for c in view.columns] == [("euler", 3), ("euler", 5), ("heun", 3), ("heun", 5)]
    assert len({p.title.styleSheet() for p in view.panels}) == 4
    assert not view.add_grid(["euler", "heun", "lms"], [2, 4, 6, 8, 10])
    assert len(view.columns) == 4 and "room for 12 more" in view.message.text()
    assert finish(view, qtbot, view.run_all) == "finished" and all(r is not None for r in view.runs)


def test_image_tiles_carry_their_seeds(qtbot):
    """Each tile of a column's mosaic is labelled with the seed that draws that sample again."""
    view = make_view(qtbot, GaussianDenoiser((1, 8, 8), std=0.5), config=RunConfig(steps=3, batch=5, seed=40))
    view.add_current()
    assert finish(view, qtbot, view.run_all) == "finished"
    seeds = view.panels[0].seeds
    assert [text for _, _, text in seeds.labels] == ["40", "41", "42", "43", "44"]
    positions = [(x, y) for x, y, _ in seeds.labels]
    assert positions[:4] == [(1, 1), (10, 1), (19, 1), (1, 10)]  # 3 tiles a row, 8 px + 1 px padding
    assert seeds.drawn(4.0) and not seeds.drawn(2.0)  # 8-px tiles: labelled once drawn 30 px wide or more
    assert "seeds 40–44" in view.panels[0].graphics.toolTip()


def test_parameter_grid_has_a_rho_axis(qtbot):
    """Solvers × step counts × ρ values, ρ named in the column titles; ρ off the edm steps is refused."""
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5))
    assert view.add_grid(["euler"], [3, 4], "3, 7")
    assert [(c.steps, c.rho) for c in view.columns] == [(3, 3.0), (3, 7.0), (4, 3.0), (4, 7.0)]
    titles = [p.title.full_text() for p in view.panels]
    assert "ρ 3" in titles[0] and "ρ" not in titles[1]
    assert not view.add_grid(["euler"], [3], "three")
    assert "ρ values must be numbers" in view.message.text() and len(view.columns) == 4
    view.session.set_config(view.session.config.replace(disc="time-uniform"))
    assert not view.add_grid(["heun"], [3], "5")
    assert "only the edm time steps" in view.message.text()


def test_four_image_columns_are_readable_at_1024_by_640(qtbot, tmp_path):
    """At 1024×640 the tab used to give the pictures 30 px (cut off at the bottom), wrap titles to
    three or four lines, squeeze the step slider to nothing beside the colour bar (widening the
    window to 1028 px) and cover the lower plot with its legend."""
    from PySide6.QtWidgets import QApplication

    from explorer.ui.main_window import MainWindow
    from explorer.ui.settings import AppSettings, open_settings

    win = MainWindow(AppSettings(open_settings(str(tmp_path / "s.ini"))), denoiser_spec="ring", autorun=False)
    qtbot.addWidget(win)
    win.use_denoiser(GaussianDenoiser((3, 8, 8), std=0.5), "gauss")
    win.resize(1024, 640)
    win.show()
    qtbot.waitExposed(win)
    view = win.compare_view
    win.tabs.setCurrentWidget(view)
    for solver, steps in (("heun", 3), ("heun", 5), ("dpm-solver++2m", 5), ("euler", 6)):
        view.add_column(RunConfig(solver=solver, steps=steps, batch=16))
    assert finish(view, qtbot, view.run_all) == "finished"
    bar = view.panels_view.color_bar  # shown with a reference (2 s to run here): its widest text
    bar.set_limit(0.73)
    bar.show()
    QApplication.processEvents()
    assert win.width() == 1024 and win.minimumSizeHint().width() <= 1024
    assert view.slider.width() >= 80 and bar.isVisible()
    viewport = view.panels_view.scroll.viewport()
    assert not view.panels_view.scroll.horizontalScrollBar().isVisible()  # four columns side by side
    for panel in view.panels:
        graphics = panel.graphics
        assert graphics.mapTo(viewport, graphics.rect().bottomRight()).y() <= viewport.height()
        assert graphics.height() >= 60
        picture = panel.image.sceneBoundingRect()
        assert picture.top() >= -1 and picture.bottom() <= graphics.height() + 1  # the mosaic whole
        lines = panel.title.text().split("\n")
        assert len(lines) == 2  # the label and the step, each cut to the width, never wrapped
        assert all(panel.title.fontMetrics().horizontalAdvance(line) <= panel.title.width() for line in lines)
    legend, box = view.plots.sigma_plot.legend, view.plots.sigma_plot.plot.getViewBox()
    assert not legend.isVisible() or legend.boundingRect().height() <= box.height() / 2


def test_a_finished_column_redraws_only_what_changed(qtbot):
    """A result used to rebuild every curve of every overlay and every row's editors on the GUI
    thread; now the curves and editors already shown stay, and hidden overlays wait for their tab."""
    view = make_view(qtbot, GaussianDenoiser((2,), std=0.5), config=RunConfig(steps=3, batch=4))
    view.add_current()
    view.add_column(RunConfig(solver="euler", steps=4))
    assert finish(view, qtbot, lambda: view.run_all([0])) == "finished"
    first_curve = view.plots.sigma_plot.plot.listDataItems()[0]
    editor = view.table.cellWidget(0, 1)
    assert finish(view, qtbot, lambda: view.run_all([1])) == "finished"
    curves = view.plots.sigma_plot.plot.listDataItems()
    assert len(curves) == 2 and curves[0] is first_curve and view.table.cellWidget(0, 1) is editor
    assert view.plots.path_plot.plot.listDataItems() == []  # not drawn while its tab is hidden
    view.plots.setCurrentWidget(view.plots.path_plot)
    assert len(view.plots.path_plot.plot.listDataItems()) == 2
    view.set_column(0, RunConfig(solver="dpm-solver++2m", steps=3))  # an edited column: its editors go
    assert view.table.cellWidget(0, 1) is not editor and view.table.cellWidget(0, 1).currentText() == "dpm-solver++2m"
