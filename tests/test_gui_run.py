"""The desktop app's runs: results equal the core's, cancel, live frames, slider, errors.

Qt runs offscreen; denoisers are tiny mixtures so the whole file takes seconds.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("pytestqt")
from PySide6.QtCore import Qt  # noqa: E402

from explorer.core.analytic import GMMDenoiser, toy  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.denoiser import Denoiser  # noqa: E402
from explorer.core.sampling import sample  # noqa: E402
from explorer.core.trajectory import Trajectory  # noqa: E402
from explorer.export.images import grid_shape, tile, to_uint8  # noqa: E402
from explorer.ui.main_window import MainWindow  # noqa: E402
from explorer.ui.settings import AppSettings, open_settings  # noqa: E402

RUN_TIMEOUT_MS = 300_000  # a guard against hangs, not a speed limit (runs take 10–30 s under heavy load)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids waiting on a busy second core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Slow(Denoiser):
    """Wraps a denoiser and sleeps on each call, so a run lasts long enough to watch."""

    def __init__(self, inner: Denoiser, delay: float, fail_at: int | None = None, error: BaseException | None = None) -> None:
        super().__init__()
        self.inner, self.delay, self.fail_at, self.error = inner, delay, fail_at, error
        self.shape, self.data_range, self.name = inner.shape, inner.data_range, f"slow-{inner.name}"
        self.calls = 0

    def forward(self, x, sigma, labels=None):
        self.calls += 1
        time.sleep(self.delay)
        if self.fail_at is not None and self.calls >= self.fail_at:
            if self.error is not None:
                raise self.error
            return torch.full_like(x, math.nan)
        return self.inner(x, sigma, labels)


class Gate(Denoiser):
    """Wraps a denoiser and holds its ``hold_at``-th call until :meth:`release`.

    A run then provably lasts until the test lets it go, however fast or loaded the machine
    is, so the test can look at the window mid-run without relying on timing.
    """

    def __init__(self, inner: Denoiser, hold_at: int) -> None:
        super().__init__()
        self.inner, self.hold_at = inner, hold_at
        self.shape, self.data_range, self.name = inner.shape, inner.data_range, f"gated-{inner.name}"
        self.calls = 0
        self.opened = threading.Event()
        self.held = threading.Event()  # the held call has begun

    def release(self) -> None:
        self.opened.set()

    def forward(self, x, sigma, labels=None):
        self.calls += 1
        if self.calls == self.hold_at:
            self.held.set()
            self.opened.wait(timeout=RUN_TIMEOUT_MS / 1000)
        return self.inner(x, sigma, labels)


def image_gmm(channels: int = 1, size: int = 8, k: int = 3) -> GMMDenoiser:
    g = torch.Generator().manual_seed(0)
    means = torch.rand(k, channels * size * size, generator=g) * 1.6 - 0.8
    return GMMDenoiser(means, [0.1] * k, [1.0] * k, (channels, size, size), name="img")


@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(AppSettings(open_settings(str(tmp_path / "settings.ini"))), denoiser_spec="ring", autorun=False)
    qtbot.addWidget(win)
    win.model.load(RunConfig(steps=6, batch=16))
    yield win
    win.cancel_run()
    win.worker.wait()


def run(window, qtbot) -> str:
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.start_run()
    return blocker.args[0]


@pytest.mark.parametrize("solver", ["heun", "dpm-solver-2", "dpm-solver++2m"])
def test_gui_run_equals_core_on_a_toy(window, qtbot, solver):
    config = RunConfig(solver=solver, steps=5, batch=16, seed=3)
    window.model.load(config)
    assert run(window, qtbot) == "finished"
    reference = sample(toy("ring"), config)
    assert window.session.trajectory.config == config
    assert torch.equal(window.session.trajectory.samples, reference.samples)
    assert torch.equal(window.session.trajectory.x, reference.x)


def test_gui_run_equals_core_on_images(window, qtbot):
    den = image_gmm(3)
    window.use_denoiser(den, "img")
    config = RunConfig(process="vp", disc="vp", solver="dpm-solver-3", steps=4, batch=5, seed=11)
    window.model.load(config)
    assert run(window, qtbot) == "finished"
    assert torch.equal(window.session.trajectory.samples, sample(den, config).samples)


def test_views_update_during_run_and_slider_shows_stored_step(window, qtbot):
    den = Gate(image_gmm(1), hold_at=5)  # euler: one call per step, held in the fifth
    window.use_denoiser(den, "slow")
    window.model.load(RunConfig(solver="euler", steps=12, batch=6))
    frames = []
    window.worker.frameReady.connect(lambda f: frames.append((f.index, window.worker.is_running())))
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS) as blocker:
        assert window.start_run()
        # The run cannot end before release(), and its first frame is always posted (later ones only
        # as the drawing budget allows): a frame drawn now was drawn while the run was going.
        qtbot.waitUntil(lambda: den.held.is_set() and len(frames) >= 1, timeout=RUN_TIMEOUT_MS)
        assert window.worker.is_running() and window.run_view.noisy_grid.image.image is not None
        den.release()
    assert blocker.args[0] == "finished"
    assert window.run_view.denoised_grid.image.image is not None
    traj: Trajectory = window.session.trajectory
    slider = window.run_view.slider
    assert slider.isEnabled() and slider.maximum() == 12 and slider.value() == 12
    slider.setValue(3)
    assert window.run_view.frame.index == 3
    cols = grid_shape(6)[1]
    from explorer.ui.frames import normalised  # xₜ shrunk per step, so early steps are not saturated noise

    noisy = normalised(traj.x[3] / traj.scale[3], window.run_view.frame.sigma, den.data_range)
    expected_noisy = tile(to_uint8(noisy, den.data_range), cols, pad=1)[..., 0]
    expected_x0 = tile(to_uint8(traj.denoised[2], den.data_range), cols, pad=1)[..., 0]
    assert np.array_equal(window.run_view.noisy_grid.image.image, expected_noisy)
    assert np.array_equal(window.run_view.denoised_grid.image.image, expected_x0)
    qtbot.keyClick(slider, Qt.Key_Left)
    assert window.run_view.frame.index == 2
    window.run_view.step_by(100)
    assert window.run_view.frame.index == 12


def test_cancel_stops_within_one_step_and_a_new_run_starts(window, qtbot):
    gate = Gate(toy("ring"), hold_at=4)
    window.use_denoiser(gate, "slow")
    window.model.load(RunConfig(solver="euler", steps=400, batch=8))
    assert window.start_run()
    record = window._live_record
    qtbot.waitUntil(lambda: record.num_states >= 3, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS) as blocker:
        window.cancel_run()  # while the 4th evaluation is held: the run is provably mid-way
        states_at_cancel = record.num_states
        gate.release()
    assert blocker.args == ["cancelled"]
    assert record.num_states <= states_at_cancel + 1  # at most the step in progress completes
    assert record.num_states < 50
    assert window.panel.sample_button.isEnabled()
    window.use_denoiser(toy("ring"), "ring")
    window.model.load(RunConfig(steps=3, batch=4))
    assert run(window, qtbot) == "finished"
    assert window.session.trajectory.num_steps == 3


def test_points_views_for_2d_toys(window, qtbot):
    window.model.load(RunConfig(solver="heun", steps=4, batch=32))
    assert run(window, qtbot) == "finished"
    paths = window.run_view.paths
    x, _ = paths.curve.getData()
    assert len(x) == 32 * 5  # one curve: every particle's 5 states
    assert len(paths.evals.data) == 32 * 7  # heun's 7 evaluations per particle
    assert window.run_view.noisy_points.dots.data.size == 32
    assert window.run_view.paths.density.image is not None


def test_clicking_a_tile_zooms_and_adds_a_pixel_trace(window, qtbot):
    window.use_denoiser(image_gmm(1), "img")
    window.model.load(RunConfig(steps=4, batch=4))
    assert run(window, qtbot) == "finished"
    view = window.run_view
    before = len(view.pixels)
    assert before == 3  # default pixels are traced before any click
    view.denoised_grid.tileClicked.emit(3, 5, 6)
    assert view.zoom_sample == 3
    assert view.pixels[-1] == (5, 6) and len(view.pixels) == before + 1
    traces = view.frame.pixel_traces
    traj = window.session.trajectory
    assert np.allclose(traces[:, 3, -1], (traj.x[:, 3, 0, 5, 6] / traj.scale).numpy(), atol=1e-6)
    curve = view.image_paths.trace_curves[len(view.pixels) - 1]
    assert curve.isVisible() and len(curve.getData()[0]) == 5 * 4
    others = view.image_paths.trace_curves[0]
    assert curve.opts["pen"].widthF() > others.opts["pen"].widthF() and curve.zValue() > others.zValue()  # stands out
    assert "pixel (5, 6)" in view.image_paths.highlight_label.toPlainText()


def test_nan_run_reports_and_keeps_previous_run(window, qtbot):
    assert run(window, qtbot) == "finished"
    previous = window.session.trajectory
    window.use_denoiser(Slow(toy("ring"), 0.0, fail_at=4), "nan")
    window.model.load(RunConfig(steps=6, batch=4))
    assert run(window, qtbot) == "failed"
    assert "NaN" in window.banner.text() and "step" in window.banner.text()
    assert window.session.trajectory is None  # the new denoiser has no finished run yet
    window.use_denoiser(toy("ring"), "ring")
    assert run(window, qtbot) == "finished"
    assert window.session.trajectory is not previous


def test_out_of_memory_is_a_message(window, qtbot):
    window.use_denoiser(Slow(toy("ring"), 0.0, fail_at=2, error=torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")), "oom")
    assert run(window, qtbot) == "failed"
    assert "Out of memory" in window.banner.text()
    assert window.panel.sample_button.isEnabled()


def test_corrupt_checkpoint_keeps_the_current_denoiser(window, qtbot, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00\x01 not a safetensors file")
    current = window.session.denoiser
    assert not window.choose_denoiser(str(bad))
    assert window.session.denoiser is current
    assert "broken.safetensors" in window.banner.text()
    assert run(window, qtbot) == "finished"


def test_open_a_gmm_json_and_exports(window, qtbot, tmp_path):
    spec = image_gmm(1).to_spec()
    path = tmp_path / "mix.json"
    import json

    path.write_text(json.dumps(spec))
    assert window.choose_denoiser(str(path))
    assert window.session.denoiser.shape == (1, 8, 8)
    assert str(path.resolve()) in window.recent
    assert run(window, qtbot) == "finished"
    assert window.export_trajectory(tmp_path / "run.safetensors")
    loaded = Trajectory.load(tmp_path / "run.safetensors")
    assert torch.equal(loaded.samples, window.session.trajectory.samples)
    assert window.export_grid(tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert window.export_config(tmp_path / "run.json")
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved.pop("denoiser") == str(path.resolve())  # the file names its denoiser
    assert RunConfig.from_dict(saved) == window.session.trajectory.config
    assert not window.export_trajectory(tmp_path / "missing-folder" / "x.safetensors")
    assert "does not exist" in window.banner.text()


def test_keyboard_shortcuts(window):
    assert window.sample_action.shortcut().toString() == "Ctrl+R"
    assert window.cancel_action.shortcut().toString() == "Esc"


def test_screenshot_mode_saves_the_window(qtbot, tmp_path, monkeypatch):
    from explorer.ui import app as app_module

    monkeypatch.setattr(app_module, "SETTLE_MS", 50)
    settings = tmp_path / "shot.ini"
    stored = AppSettings(open_settings(str(settings)))
    stored.set_config(RunConfig(steps=4, batch=64))
    stored.set_denoiser("ring")  # a toy keeps this test fast (the default is a network)
    stored.sync()
    out = tmp_path / "shot.png"
    assert app_module.run_app(screenshot=str(out), settings_path=str(settings)) == 0
    from PIL import Image

    with Image.open(out) as img:
        assert img.size[0] >= 1000 and img.size[1] >= 700
    with pytest.raises(ValueError):
        app_module.run_app(screenshot=str(tmp_path / "shot.jpg"))


class Conditional(Denoiser):
    """A 2-D toy that pretends to have three classes (and records the labels it gets)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = toy("ring")
        self.shape, self.label_dim, self.name = (2,), 3, "cond"
        self.label_names = ["a", "b", "c"]
        self.seen = None

    def forward(self, x, sigma, labels=None):
        self.seen = labels
        return self.inner(x, sigma)


def test_class_label_for_conditional_models(window, qtbot):
    den = Conditional()
    window.use_denoiser(den, "cond")
    box = window.panel.label_box
    assert box.isEnabled() and box.count() == 4 and box.itemText(3) == "2: c"
    assert box.select(2)
    assert window.model.config.label == 2
    assert run(window, qtbot) == "finished"
    assert den.seen is not None and den.seen.argmax(1).tolist() == [2] * window.model.config.batch
    window.use_denoiser(toy("ring"), "ring")
    assert window.model.config.label is None and not box.isEnabled()


def test_cancel_and_failure_restore_the_previous_progress(window, qtbot):
    assert run(window, qtbot) == "finished"
    steps = window.session.trajectory.num_steps
    window.use_denoiser(Slow(toy("ring"), 0.0, fail_at=3), "nan")
    window.model.load(RunConfig(steps=8, batch=4))
    assert run(window, qtbot) == "failed"
    assert window.panel.progress.value() == 0 and window.panel.nfe_counter.text() == "NFE 0"
    window.use_denoiser(toy("ring"), "ring")
    window.model.load(RunConfig(steps=steps, batch=4))
    assert run(window, qtbot) == "finished"
    assert window.panel.progress.value() == steps


def test_sigma_view_redraws_before_any_run(window):
    view = window.run_view.sigma_view
    before = view.step_marks.data["y"].copy()
    window.panel.rho_box.setValue(3)
    after = view.step_marks.data["y"]
    assert len(after) == len(before) and not np.allclose(after, before)
    window.panel.steps_box.setValue(9)
    assert len(view.step_marks.data) == 9  # the positive σ's of 9 steps (the final σ = 0 is off the log axis)
    window.panel.process_box.select("vp")
    window.panel.disc_box.select("vp")
    _, scale = view.scale_curve.getData()
    assert scale.min() < 0.1 and np.isclose(scale.max(), 1.0, atol=1e-3)  # s(t) of VP is drawn
    view.set_mode("h")
    x, y = view.series.getData()
    assert len(x) == 8 and (y > 0).all()  # steps in λ between the 9 positive σ's
    assert window.session.trajectory is None


def test_cancel_keeps_the_partial_run_scrubbable_and_marked(window, qtbot):
    window.use_denoiser(Slow(toy("ring"), 0.02), "slow")
    window.model.load(RunConfig(solver="euler", steps=400, batch=8))
    assert window.start_run()
    record = window._live_record
    qtbot.waitUntil(lambda: record.num_states >= 4, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(window.runEnded, timeout=RUN_TIMEOUT_MS):
        window.cancel_run()
    assert window.record is record and record.trajectory is not None and record.num_states >= 4
    assert window.session.status.state == "cancelled" and "kept" in window.status_label.text()
    slider = window.run_view.slider
    assert slider.isEnabled() and slider.maximum() == record.num_states - 1
    slider.setValue(1)
    assert window.run_view.step_label.text().startswith("step 1")


def test_run_status_drives_progress_nfe_and_slider(window, qtbot):
    from explorer.session.status import RunStatus, starting

    assert run(window, qtbot) == "finished"
    slider = window.run_view.slider
    assert slider.isEnabled() and slider.value() == slider.maximum() > 0
    window.session.set_status(starting(10, 19))  # only the status changes: the views follow it
    assert window.panel.progress.maximum() == 10 and window.panel.nfe_counter.text() == "NFE 0 / 19"
    assert not slider.isEnabled() and slider.value() == 0  # the handle waits at the start
    assert window.panel.cancel_button.isEnabled()
    window.session.set_status(window.session.status.advance(4, 7))
    assert window.panel.progress.value() == 4 and window.panel.nfe_counter.text() == "NFE 7 / 19"
    window.session.set_status(RunStatus("finished", 6, 6, 11))
    assert window.panel.progress.value() == 6 and window.panel.nfe_counter.text() == "NFE 11"
    assert not window.panel.cancel_button.isEnabled()


def test_invalid_settings_fade_the_sigma_plots_and_a_denoiser_switch_resets_the_status(window, qtbot):
    assert run(window, qtbot) == "finished"
    view = window.run_view.sigma_view
    window.run_view.set_plan(None)
    assert view.top.opacity() < 0.5 and "invalid" in view.top.titleLabel.text
    window.run_view.set_plan(window.model.plan)
    assert view.top.opacity() == 1.0 and "invalid" not in view.top.titleLabel.text
    window.use_denoiser(toy("moons"), "moons")
    assert window.session.status.state == "idle" and window.panel.nfe_counter.text() == "NFE 0"


def test_a_saved_configuration_opens_its_denoiser(window, tmp_path):
    window.model.load(RunConfig(solver="euler", steps=7, batch=512))
    assert window.export_config(tmp_path / "ring.json")
    window.use_denoiser(image_gmm(1), "img")
    window.model.load(RunConfig(steps=5, batch=4))
    assert window.import_config(tmp_path / "ring.json")
    assert window.session.denoiser_spec == "ring" and window.model.config.batch == 512
    (tmp_path / "bad.json").write_text('{"denoiser": "no-such-model", "steps": 3}')
    assert not window.import_config(tmp_path / "bad.json")
    assert window.session.denoiser_spec == "ring" and window.model.config.steps == 7  # nothing changed


def test_status_bar_names_the_runs_sigma_range_not_inf(window):
    """A denoiser defined at every σ says so, and the planned run's σ range follows the settings."""
    text = window.denoiser_status.text()
    assert "inf" not in text and "any σ" in text
    lo, hi = window.model.plan.sigma_range
    assert f"run σ {lo:.3g}–{hi:.3g}" in text
    window.model.set_value("sigma_max", 20.0)
    assert "–20" in window.denoiser_status.text()


def test_restart_jumps_are_drawn_apart_in_the_particle_paths(window, qtbot):
    """Issue #11: Restart's forward jumps (σ rises between recorded states) are dashed, with a legend
    entry; with several intervals, the jumps of each."""
    from explorer.ui.trajectory_views import JUMP_NAME

    window.model.load(RunConfig(solver="restart", steps=6, batch=8))
    assert run(window, qtbot) == "finished"
    paths = window.run_view.paths
    sigmas = window.record.frame(window.record.num_states - 1).sigmas
    rises = int((sigmas[1:] > sigmas[:-1]).sum())
    assert rises >= 1
    x, _ = paths.jumps.getData()
    assert len(x) == rises * 8 * 2  # one segment per particle and jump
    assert paths.legend.getLabel(paths.jumps).text == JUMP_NAME
    two = {"restart_intervals": "0.06:0.3:1:2,1:5:2:1"}  # one jump up to σ 5 at σ 0.97, then one to 0.3 at 0.085
    window.model.load(RunConfig(solver="restart", steps=6, batch=8, options=two))
    assert run(window, qtbot) == "finished"
    sigmas = window.record.frame(window.record.num_states - 1).sigmas
    jumps = sigmas[1:][sigmas[1:] > sigmas[:-1]]
    assert jumps.tolist() == pytest.approx([5.0, 5.0, 0.3])
    x, _ = paths.jumps.getData()
    assert len(x) == 3 * 8 * 2
    window.model.load(RunConfig(solver="heun", steps=4, batch=8))
    assert run(window, qtbot) == "finished"
    x, _ = paths.jumps.getData()
    assert x is None or len(x) == 0
    assert paths.legend.getLabel(paths.jumps) is None


@pytest.mark.parametrize("size", [(1024, 640), (1600, 1000)])
def test_seed_batch_device_and_the_sigma_plot_fit_the_window(window, qtbot, size):
    """At 1024×640 and larger: seed, batch and device in view without scrolling, and the σ(t)
    plot (its right s(t) axis included) inside its widget (a long title used to widen it)."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication, QScrollArea

    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    QApplication.processEvents()
    viewport = window.panel.findChild(QScrollArea).viewport()
    for box in (window.panel.seed_box, window.panel.batch_box, window.panel.device_box):
        top = box.mapTo(viewport, QPoint(0, 0)).y()
        assert 0 <= top and top + box.height() <= viewport.height(), box.objectName()
    sigma = window.run_view.sigma_view
    right = sigma.top.mapRectToScene(sigma.top.boundingRect()).right()
    assert right <= sigma.graphics.width() + 1
    assert sigma.top.getAxis("right").isVisible()


def test_the_denoiser_and_config_are_held_once(window, qtbot):
    """The panel's model and the tabs' session are faces of one run session, with no copy of their own."""
    from explorer.session.run import RunSession

    state = window.state
    assert isinstance(state, RunSession) and window.model.state is state and window.session.state is state
    for adapter in (window.model, window.session):  # nothing held beside the run session
        own = [name for name, v in vars(adapter).items() if isinstance(v, (Denoiser, RunConfig, dict, list))]
        assert own == [], own
    window.panel.steps_box.setValue(9)  # through the GUI …
    assert state.value("steps") == 9 and window.session.config.steps == 9  # … seen by the session
    window.session.set_config(RunConfig(solver="euler", steps=4, batch=16))  # through the session …
    assert window.panel.solver_box.value() == "euler" and window.panel.steps_box.value() == 4  # … seen by the panel
    assert window.model.config is state.config is window.session.config
    window.panel.denoiserPicked.emit("moons")  # a denoiser picked in the panel
    assert window.session.denoiser is window.model.denoiser is state.denoiser
    assert window.session.denoiser_spec == "moons" and window.model.denoiser.name == toy("moons").name
    window.session.set_denoiser(toy("ring"), "ring")  # and one set through the session
    assert window.model.denoiser is state.denoiser and window.panel.denoiser_box.value() == "ring"


def test_the_mosaics_and_their_titles_fit_at_1024_by_640(window, qtbot):
    """The xₜ mosaic's long title used to widen its plot past its widget at 1024×640, cutting off
    the title and the mosaic's right tiles; both mosaics must lie whole inside their widgets."""
    from PySide6.QtWidgets import QApplication

    window.use_denoiser(image_gmm(1), "img")
    window.resize(1024, 640)
    window.show()
    qtbot.waitExposed(window)
    QApplication.processEvents()
    for grid in (window.run_view.denoised_grid, window.run_view.noisy_grid):
        width = grid.widget.width()
        assert grid.box.sceneBoundingRect().right() <= width + 1
        for row in (0, 1):  # the title and the subtitle, unclipped
            label = grid.widget.ci.getItem(row, 0)
            assert label.item.boundingRect().width() <= width, label.text
