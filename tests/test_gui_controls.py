"""The control panel: impossible combinations disable Sample with a reason at the control."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from explorer.core.analytic import toy  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.session.run import RunSession  # noqa: E402
from explorer.session.values import BUDGET, Invalid, check, values_of  # noqa: E402
from explorer.ui.config_model import ConfigModel  # noqa: E402
from explorer.ui.controls import ControlPanel  # noqa: E402


@pytest.fixture
def panel(qtbot):
    model = ConfigModel(RunSession(toy("ring"), "ring", RunConfig(steps=6, batch=8)))
    widget = ControlPanel(model)
    qtbot.addWidget(widget)
    return widget


def set_text(edit, text: str) -> None:
    edit.setText(text)
    edit.editingFinished.emit()


def set_combo(box, data) -> None:
    assert box.select(data)


def assert_blocked(panel, field: str, words: str) -> None:
    assert not panel.sample_button.isEnabled()
    assert panel.model.config is None
    label = panel._bindings[field].error if field else panel.general_error
    assert not label.isHidden(), f"no message at {field}: {panel.model.error} (blamed {panel.model.culprit})"
    assert words.lower() in label.text().lower()
    assert panel.nfe_label.text() == "—"


def assert_ok(panel) -> None:
    assert panel.model.config is not None, panel.model.error
    assert panel.sample_button.isEnabled()
    assert all(b.error.isHidden() for b in panel._bindings.values())
    assert panel.general_error.isHidden()


def test_sigma_min_above_sigma_max(panel):
    set_text(panel.sigma_min_edit, "5")
    assert_ok(panel)
    set_text(panel.sigma_max_edit, "1")
    assert_blocked(panel, "sigma_max", "smaller than σ_max")
    set_text(panel.sigma_max_edit, "")
    assert_ok(panel)
    assert panel.model.config.sigma_min == 5 and panel.model.config.sigma_max is None


def test_text_that_is_no_number(panel):
    set_text(panel.sigma_min_edit, "abc")
    assert_blocked(panel, "sigma_min", "must be a number")
    set_text(panel.sigma_min_edit, "0.01")
    assert_ok(panel)


def test_rho_not_positive(panel):
    panel.rho_box.setValue(0)
    assert_blocked(panel, "rho", "ρ must be a positive")
    panel.rho_box.setValue(-3)
    assert_blocked(panel, "rho", "ρ")
    panel.rho_box.setValue(5)
    assert_ok(panel)
    assert panel.model.config.rho == 5


def test_rho_enabled_only_for_the_edm_discretization(panel):
    assert panel.rho_box.isEnabled()
    set_combo(panel.disc_box, "logsnr")
    assert not panel.rho_box.isEnabled()
    assert_ok(panel)


def test_churn_belongs_to_the_solvers_that_declare_it(panel):
    churn = panel.option_widget("churn")
    set_combo(panel.solver_box, "heun")
    set_text(churn, "5")
    assert_ok(panel)
    assert panel.model.config.options["churn"] == 5 and not panel.option_widget("s_noise").isHidden()
    set_combo(panel.solver_box, "lms")  # no churn there: the row goes, the value is not used
    assert_ok(panel)
    assert churn.isHidden() and panel.model.config.options == {}
    assert not panel.no_options.isHidden()
    set_combo(panel.solver_box, "euler")  # the same declaration: the value comes back
    assert panel.model.config.options["churn"] == 5 and not churn.isHidden()


def test_bad_churn_is_blamed_on_churn(panel):
    set_text(panel.option_widget("churn"), "-2")
    assert_blocked(panel, "options.churn", "S_churn must satisfy 0 ≤ S_churn")
    set_text(panel.option_widget("churn"), "0")
    assert_ok(panel)


def test_options_of_the_same_name_start_from_each_solvers_own_default(panel):
    from explorer.core.solvers import SOLVERS

    set_combo(panel.solver_box, "dpm-solver-23")
    assert panel.model.config.options["rtol"] == SOLVERS["dpm-solver-23"].option("rtol").default
    set_combo(panel.solver_box, "reference")
    assert panel.model.config.options["rtol"] == SOLVERS["reference"].option("rtol").default
    assert panel.option_widget("rtol").text() == "1e-08"  # the widget shows the reset value
    assert panel.option_widget("atol").placeholderText() == "solver's choice"


def test_restart_intervals_row_reads_the_cli_syntax(panel):
    """Issue #11: the interval list is one text row, parsed and checked by its declaration."""
    rows = panel.option_widget("restart_intervals")
    assert rows.isHidden()
    set_combo(panel.solver_box, "restart")
    assert not rows.isHidden() and rows.placeholderText() == "σ_min:σ_max:K:steps,…"
    set_text(rows, "0.3:2:1")
    assert_blocked(panel, "options.restart_intervals", "Restart interval 1 needs 4 numbers")
    set_text(rows, "0.06:0.3:2:3, 0.3:2:1:3")
    assert_ok(panel)
    assert panel.model.config.options["restart_intervals"] == ((0.06, 0.3, 2, 3), (0.3, 2.0, 1, 3))
    panel.option_widget("restart_k").setValue(4)
    assert_blocked(panel, "options.restart_k", "leave K at the default")
    panel.option_widget("restart_k").setValue(2)
    panel.model.load(panel.model.config)
    assert rows.text() == "0.06:0.3:2:3,0.3:2:1:3"  # written back in the same syntax
    set_text(rows, "")
    assert_ok(panel)
    assert panel.model.config.options["restart_intervals"] is None


def test_grid_nodes_make_lower_order_final_apply_and_cost_one_evaluation_a_step(panel):
    set_combo(panel.solver_box, "dpm-solver++3s")
    panel.steps_box.setValue(6)
    assert not panel.lof_box.isEnabled() and panel.nfe_label.text().startswith("16")
    set_combo(panel.option_widget("nodes"), "grid")
    assert_ok(panel)
    assert panel.lof_box.isEnabled() and panel.nfe_label.text().startswith("6")
    assert panel.model.plan.orders == [1, 2, 3, 1, 2, 1]


def test_nfe_budget_too_small(panel):
    set_combo(panel.solver_box, "dpm-solver-3")
    set_combo(panel.final_box, "sigma_min")
    set_combo(panel.budget_box, True)
    panel.nfe_box.setValue(6)
    assert_ok(panel)
    assert panel.nfe_label.text().startswith("6")
    panel.nfe_box.setValue(2)
    assert_blocked(panel, "nfe", "too small")
    panel.nfe_box.setValue(9)
    assert_ok(panel)
    assert panel.model.nfe == 9


def test_steps_change_the_nfe_shown_before_a_run(panel):
    set_combo(panel.solver_box, "heun")
    panel.steps_box.setValue(10)
    assert panel.nfe_label.text().startswith("19")
    set_combo(panel.solver_box, "dpm-solver-fast")
    set_combo(panel.budget_box, True)
    panel.nfe_box.setValue(10)
    assert panel.nfe_label.text().startswith("10")
    set_combo(panel.solver_box, "dpm-solver-12")
    assert_blocked(panel, "solver", "chooses its own steps")
    set_combo(panel.budget_box, False)
    assert_ok(panel)
    assert "adaptive" in panel.nfe_label.text()
    assert not panel.option_widget("rtol").isHidden()


def test_tolerances_and_eta(panel):
    set_combo(panel.solver_box, "dpm-solver-23")
    set_text(panel.option_widget("rtol"), "-1")
    assert_blocked(panel, "options.rtol", "rtol must satisfy 0 < rtol")
    set_text(panel.option_widget("rtol"), "0.01")
    assert_ok(panel)
    set_combo(panel.solver_box, "euler-ancestral")
    assert not panel.option_widget("eta").isHidden()
    set_text(panel.option_widget("eta"), "-0.5")
    assert_blocked(panel, "options.eta", "η must satisfy 0 ≤ η")
    set_text(panel.option_widget("eta"), "0.5")
    assert_ok(panel)
    assert panel.model.config.options["eta"] == 0.5


def test_heun_alpha_and_cuda_without_gpu(panel):
    import torch

    set_text(panel.option_widget("alpha"), "0")
    assert_blocked(panel, "options.alpha", "α")
    set_text(panel.option_widget("alpha"), "0.5")
    assert_ok(panel)
    if not torch.cuda.is_available():
        set_combo(panel.device_box, "cuda")
        assert_blocked(panel, "device", "cuda")
        set_combo(panel.device_box, "auto")
        assert_ok(panel)


def test_advanced_process_pair(panel):
    set_combo(panel.process_box, "vp")
    panel.advanced.setChecked(True)
    assert panel.model.config.sigma_schedule == "vp" and panel.model.config.scaling == "vp"
    set_combo(panel.scaling_box, "none")
    assert panel.model.config.scaling == "none"
    assert panel.eps_box.isEnabled()
    panel.advanced.setChecked(False)
    assert panel.model.config.sigma_schedule is None and panel.model.config.scaling is None


def test_two_problems_blame_the_edit_that_broke_it(panel):
    panel.rho_box.setValue(0)
    set_text(panel.sigma_min_edit, "9")
    set_text(panel.sigma_max_edit, "2")
    assert not panel.sample_button.isEnabled()
    panel.rho_box.setValue(7)
    assert not panel.sample_button.isEnabled()  # σ range still wrong
    set_text(panel.sigma_min_edit, "")
    assert_ok(panel)


def test_check_never_raises_and_loads_round_trip():
    den = toy("ring")
    config = RunConfig(solver="heun", steps=7, seed=4, batch=3, churn=2.0, s_max=30.0, disc="logsnr")
    assert check(values_of(config), den).config == config
    values = values_of(config)
    values["sigma_min"] = Invalid("σ_min must be a number")
    assert check(values, den).error == "σ_min must be a number"
    values = values_of(config)
    values["batch"] = "eight"
    assert "batch" in check(values, den).error
    values = values_of(RunConfig(nfe=12))
    assert values[BUDGET] is True and check(values, den).config.nfe == 12


def test_class_label_only_for_conditional_models(panel):
    assert not panel.label_box.isEnabled()
    assert panel.label_box.count() == 1


def test_reading_combo_values_keeps_none_alive(panel):
    """PySide6 6.12 drops a reference to None on each empty itemData(); DataCombo avoids it."""
    import sys

    before = sys.getrefcount(None)
    for _ in range(3000):
        panel.label_box.value()  # the "unconditional" item's value is None
        panel.denoiser_box.value_at(panel.denoiser_box.count() + 5)
    assert sys.getrefcount(None) > before - 1000


def test_guidance_controls_need_a_class_for_classifier_free_guidance(qtbot):
    from explorer.core.analytic import GaussianDenoiser

    class Conditional(GaussianDenoiser):
        label_dim = 3

    model = ConfigModel(RunSession(Conditional((2,), mean=0.0, std=0.5, name="cond"), "cond", RunConfig(steps=6, batch=8)))
    panel = ControlPanel(model)
    qtbot.addWidget(panel)
    assert not panel.guide_box.isEnabled()  # w = 1: no guidance, no guide to choose
    panel.guidance_box.setValue(2.0)
    assert_blocked(panel, "guidance", "needs a class")
    set_combo(panel.label_box, 1)
    assert_ok(panel)
    assert model.config.guidance == 2.0 and model.config.guide is None and panel.guide_box.isEnabled()
    panel._select_guide("ring")
    assert model.config.guide == "ring"  # autoguidance by another model of the same shape
    model.load(RunConfig(steps=6, guidance=1.5, guide="gaussian"))
    assert panel.guide_box.value() == "gaussian" and panel.guidance_box.value() == 1.5


def test_nfe_follows_the_steps_while_they_are_typed(panel, qtbot):
    """Each keystroke in the steps box updates the NFE (solver's rule, no plan); Enter commits."""
    from PySide6.QtCore import Qt

    set_combo(panel.solver_box, "heun")
    box = panel.steps_box
    box.show()
    box.setFocus()
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "12")
    assert panel.nfe_label.text().startswith("23")  # 2·12 − 1, before Enter
    assert panel.model.value("steps") == 6  # not yet committed
    qtbot.keyClick(box.lineEdit(), Qt.Key_Return)
    assert panel.model.value("steps") == 12
    assert panel.nfe_label.text().startswith("23")
    set_combo(panel.solver_box, "restart")
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "4")
    expected = panel._info().nfe(4, True)
    assert panel.nfe_label.text().startswith(str(expected))
