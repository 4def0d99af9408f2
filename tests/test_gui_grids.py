"""The control panel's custom grid: a grid file replaces the discretization and shows in the σ view."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from explorer.core.analytic import toy  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.session.run import RunSession  # noqa: E402
from explorer.ui.config_model import ConfigModel  # noqa: E402
from explorer.ui.controls import ControlPanel  # noqa: E402
from explorer.ui.sigma_view import SigmaView  # noqa: E402


@pytest.fixture
def panel(qtbot):
    widget = ControlPanel(ConfigModel(RunSession(toy("ring"), "ring", RunConfig(steps=6, batch=8))))
    qtbot.addWidget(widget)
    return widget


def test_custom_grid_loads_shows_and_clears(panel, qtbot, tmp_path):
    path = tmp_path / "grid.json"
    path.write_text('{"sigmas": [60, 12, 3, 0.7, 0.1, 0], "source": "my grid"}')
    assert panel.load_grid_file(str(path))
    assert panel.model.config.sigmas == (60.0, 12.0, 3.0, 0.7, 0.1, 0.0)
    assert not panel.disc_box.isEnabled() and "my grid (5 steps)" in panel.grid_label.text()
    assert panel.nfe_label.text().startswith("9")  # heun: 2·5 − 1
    view = SigmaView()
    qtbot.addWidget(view)
    view.set_plan(panel.model.plan)
    assert list(view._sigmas[:-1]) == pytest.approx([60, 12, 3, 0.7, 0.1])
    view.resize(500, 400)
    view.grab().save(str(tmp_path / "sigma_view_custom.png"))
    panel.clear_grid()
    assert panel.model.config.sigmas is None and panel.disc_box.isEnabled() and panel.grid_label.text() == ""


def test_bad_grid_file_is_reported_and_nothing_changes(panel, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[1, 2, 3]")
    assert not panel.load_grid_file(str(path))
    assert "decrease" in panel.general_error.text() and panel.model.config.sigmas is None


def test_compare_columns_differ_by_grid(qtbot, tmp_path):
    from explorer.core.analytic import GaussianDenoiser
    from explorer.core.grids import Grid, save_grid
    from explorer.ui.compare_view import CompareView
    from explorer.ui.session import Session

    view = CompareView(Session(RunSession(GaussianDenoiser((2,), std=0.5), "gaussian", RunConfig(steps=4, batch=4))))
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.add_current()
    path = save_grid(tmp_path / "ays.json", Grid((80.0, 9.0, 1.5, 0.2, 0.0), source="four steps"))
    assert view.add_grid_column(str(path))
    assert not view.add_grid_column(str(tmp_path / "missing.json"))
    assert [c.sigmas for c in view.columns] == [None, (80.0, 9.0, 1.5, 0.2, 0.0)]
    from explorer.core.compare import column_label

    labels = [column_label(c) for c in view.columns]
    assert "four steps" in labels[1] and "four steps" not in labels[0]
    with qtbot.waitSignal(view.runEnded, timeout=30_000) as blocker:
        assert view.run_all()
    assert blocker.args[0] == "finished"
    sig = [r.trajectory.sigma.tolist() for r in view.runs]
    assert sig[1] == pytest.approx([80.0, 9.0, 1.5, 0.2, 0.0]) and sig[0] != sig[1]
    view.grab().save(str(tmp_path / "compare_grids.png"))
