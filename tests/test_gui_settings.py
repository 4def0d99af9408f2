"""What the app remembers (QSettings in a temp file), and the Reset menu item."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from explorer.core.config import RunConfig  # noqa: E402
from explorer.models.loader import default_model_name  # noqa: E402
from explorer.core.defaults import default_batch, default_run_config  # noqa: E402
from explorer.ui.main_window import MainWindow  # noqa: E402
from explorer.ui.settings import AppSettings, open_settings  # noqa: E402


def make(qtbot, path, **kw) -> MainWindow:
    win = MainWindow(AppSettings(open_settings(str(path))), autorun=False, **kw)
    qtbot.addWidget(win)
    return win


def test_geometry_config_denoiser_and_recent_files_persist(qtbot, tmp_path):
    path = tmp_path / "settings.ini"
    spec = tmp_path / "two.json"
    spec.write_text('{"kind": "gmm", "shape": [2], "means": [[0, 1], [1, 0]], "stds": [0.1, 0.2], "weights": [1, 2]}')
    first = make(qtbot, path)
    assert first.choose_denoiser(str(spec))
    config = RunConfig(solver="dpm-solver++2m", steps=9, seed=7, batch=33, disc="logsnr")
    first.model.load(config)
    first.resize(700, 500)  # inside the offscreen screen (800×600), so nothing clamps it
    first.run_view.sigma_view.mode_box.setCurrentIndex(2)
    first._set_sigma_mode("h")
    first.close()

    second = make(qtbot, path)
    assert second.model.config == config
    assert second.session.denoiser_spec == str(spec.resolve())
    assert second.session.denoiser.shape == (2,)
    assert second.recent[0] == str(spec.resolve())
    assert second.size().width() == 700 and second.size().height() == 500
    assert second.run_view.sigma_view.mode == "h"

    second.reset_settings()
    assert second.model.config == default_run_config(second.session.denoiser)
    assert second.recent == []
    assert second.size().width() == 1400
    assert AppSettings(open_settings(str(path))).config() is None
    second.close()


def test_a_missing_remembered_file_falls_back_to_the_default(qtbot, tmp_path):
    path = tmp_path / "settings.ini"
    stored = AppSettings(open_settings(str(path)))
    stored.set_denoiser(str(tmp_path / "gone.safetensors"))
    stored.store.setValue("run/config", "{not json")
    stored.sync()
    win = make(qtbot, path)
    assert win.session.denoiser_spec == default_model_name()
    assert "gone.safetensors" in win.banner.text()
    assert win.model.config == default_run_config(win.session.denoiser)


def test_screenshot_windows_do_not_write_settings(qtbot, tmp_path):
    path = tmp_path / "settings.ini"
    win = make(qtbot, path, remember=False)
    win.model.load(RunConfig(steps=3))
    win.close()
    assert AppSettings(open_settings(str(path))).config() is None


def test_compare_tab_only_when_its_module_imports(qtbot, tmp_path):
    win = make(qtbot, tmp_path / "s.ini")
    names = [win.tabs.tabText(i) for i in range(win.tabs.count())]
    assert names[0] == "Run"
    try:
        import explorer.ui.compare_view  # noqa: F401
    except ImportError:
        assert names == ["Run"]
    else:
        assert "Compare" in names or "could not be built" in win.banner.text()


def test_an_untouched_batch_follows_the_kind_of_data(qtbot, tmp_path):
    import torch
    from explorer.core.analytic import GMMDenoiser, toy

    win = make(qtbot, tmp_path / "s.ini", denoiser_spec="ring")
    win.model.load(default_run_config(win.session.denoiser))
    images = GMMDenoiser(torch.zeros(2, 16), [0.1, 0.1], [1, 1], (1, 4, 4))
    win.use_denoiser(images, "img")
    assert win.model.config.batch == default_batch(images) == win.panel.batch_box.value()
    win.panel.batch_box.setValue(5)
    win.use_denoiser(toy("ring"), "ring")
    assert win.model.config.batch == 5  # the user's own choice stays


def test_lower_plot_choice_and_compare_columns_are_restored(qtbot, tmp_path):
    path = tmp_path / "settings.ini"
    first = make(qtbot, path, denoiser_spec="ring")
    first.run_view.sigma_view.mode_box.select("h")  # chosen in the box itself, not the menu
    first.compare_view.add_column(RunConfig(solver="euler", steps=7, batch=5))
    first.compare_view.add_column(RunConfig(solver="heun", steps=3, batch=5))
    first.close()
    second = make(qtbot, path, denoiser_spec="ring")
    assert second.run_view.sigma_view.mode_box.value() == "h"
    assert [(c.solver, c.steps) for c in second.compare_view.columns] == [("euler", 7), ("heun", 3)]
    assert second.compare_view.batch == 5


def test_a_window_that_does_not_remember_writes_no_settings(qtbot, tmp_path):
    path = tmp_path / "settings.ini"
    win = make(qtbot, path, denoiser_spec="ring", remember=False)
    win._set_sigma_mode("h")
    win.settings.set_last_folder(str(tmp_path))
    win.close()
    assert not path.exists() or "view" not in path.read_text() and "folder" not in path.read_text()


def test_wheel_over_an_unfocused_spin_box_changes_nothing(qtbot, tmp_path):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication, QSpinBox

    win = make(qtbot, tmp_path / "s.ini", denoiser_spec="ring")
    box = win.compare_view.seed_box
    assert isinstance(box, QSpinBox) and not box.hasFocus()
    before = box.value()
    event = QWheelEvent(QPointF(5, 5), QPointF(5, 5), QPoint(0, 0), QPoint(0, 120), Qt.NoButton, Qt.NoModifier,
                        Qt.NoScrollPhase, False)
    QApplication.sendEvent(box, event)
    assert box.value() == before


def test_closing_stops_the_compare_tabs_thread(qtbot, tmp_path):
    win = make(qtbot, tmp_path / "s.ini", denoiser_spec="ring")
    win.compare_view.add_current()
    with qtbot.waitSignal(win.compare_view.runEnded, timeout=30_000):
        win.compare_view.run_all()
    assert win.compare_view.worker._thread is not None
    win.close()
    assert win.compare_view.worker._thread is None  # nothing left for the exit hook to wait on
