"""Solvers declare their own options: the config validates them, the CLI and the control
panel are built from the declarations, and older flat JSON still loads."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from explorer.cli import main  # noqa: E402
from explorer.core.analytic import GaussianDenoiser  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.sampling import sample  # noqa: E402
from explorer.core.solvers import SOLVERS, Option, SolverInfo, register, solver_color, unregister  # noqa: E402
from explorer.core.solvers.context import steps_of  # noqa: E402
from explorer.core.solvers.rules import PerStep  # noqa: E402

WOBBLE = Option("wobble", float, 0.5, "how far each step overshoots (a throwaway test option)", "wobble", low=0.0, high=1.0)
MODE = Option("toy_mode", str, "plain", "which toy update", "mode", choices=("plain", "doubled"))


def _toy(ctx):
    """Euler in t, overshooting each step by (1 + wobble); proves the option reaches the solver."""
    x, k = ctx.x0, 1 + ctx.option("wobble") * (2 if ctx.option("toy_mode") == "doubled" else 1)
    for i, t_cur, t_next in steps_of(ctx.plan.t):
        d = ctx.ode_derivative(x, t_cur, ctx.denoise(x, t_cur))
        x = x + (k * (t_next - t_cur)) * d
        yield ctx.event(i + 1, t_next, x, 1)


@pytest.fixture
def toy_solver():
    register(SolverInfo("toy-wobble", _toy, 1, PerStep(), options=(WOBBLE, MODE), color="#123456", summary="test only"))
    try:
        yield SOLVERS["toy-wobble"]
    finally:
        unregister("toy-wobble")


def test_options_are_validated_and_filled(toy_solver):
    cfg = RunConfig(solver="toy-wobble", steps=3)
    assert cfg.options == {"wobble": 0.5, "toy_mode": "plain"}
    assert RunConfig(solver="toy-wobble", options={"wobble": 1}).options["wobble"] == 1.0
    with pytest.raises(ValueError, match=r"wobble must satisfy 0 ≤ wobble ≤ 1"):
        RunConfig(solver="toy-wobble", options={"wobble": 2.0})
    with pytest.raises(ValueError, match="Unknown mode 'loud'"):
        RunConfig(solver="toy-wobble", options={"toy_mode": "loud"})
    with pytest.raises(ValueError, match="wobble applies to toy-wobble only, not to heun"):
        RunConfig(solver="heun", options={"wobble": 0.1})
    with pytest.raises(ValueError, match="heun has no option 'nonsense'"):
        RunConfig(solver="heun", options={"nonsense": 1})
    assert solver_color("toy-wobble") == "#123456"


def test_option_reaches_the_solver(toy_solver):
    den = GaussianDenoiser((2,), mean=0.0, std=1.0)
    noise = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))
    runs = [sample(den, RunConfig(solver="toy-wobble", steps=4, dtype="float64", options={"wobble": w}), noise=noise)
            for w in (0.0, 0.5)]
    euler = sample(den, RunConfig(solver="euler", steps=4, dtype="float64"), noise=noise)
    assert torch.allclose(runs[0].x, euler.x, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(runs[1].x[1], euler.x[1])


def test_cli_flags_come_from_the_declarations(toy_solver, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--wobble" in help_text and "--toy-mode" in help_text and "throwaway test option" in help_text
    out = tmp_path / "run.safetensors"
    assert main(["sample", "--model", "gaussian", "--solver", "toy-wobble", "--wobble", "0.25", "--toy-mode", "doubled",
                 "--steps", "3", "--batch", "2", "--out", str(out)]) == 0
    from explorer.core.trajectory import Trajectory

    config = RunConfig.from_json(Trajectory.load(out).metadata()["config"])
    assert config.options == {"wobble": 0.25, "toy_mode": "doubled"}
    capsys.readouterr()
    assert main(["sample", "--model", "gaussian", "--solver", "heun", "--wobble", "0.25", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wobble applies to toy-wobble only, not to heun" in err[0]


def test_gui_rows_come_from_the_declarations(toy_solver, qtbot):
    pytest.importorskip("pytestqt")
    from explorer.core.analytic import toy
    from explorer.session.run import RunSession
    from explorer.ui.config_model import ConfigModel
    from explorer.ui.controls import ControlPanel

    panel = ControlPanel(ConfigModel(RunSession(toy("ring"), "ring", RunConfig(steps=4, batch=4))))
    qtbot.addWidget(panel)
    wobble = panel.option_widget("wobble")
    assert wobble.isHidden()  # heun has no wobble
    assert panel.solver_box.select("toy-wobble")
    assert not wobble.isHidden() and "throwaway test option" in wobble.toolTip()
    wobble.setText("3")
    wobble.editingFinished.emit()
    assert panel.model.config is None and panel.model.culprit == "options.wobble"
    assert "wobble must satisfy" in panel._bindings["options.wobble"].error.text()
    wobble.setText("0.75")
    wobble.editingFinished.emit()
    assert panel.option_widget("toy_mode").select("doubled")
    assert panel.model.config.options == {"wobble": 0.75, "toy_mode": "doubled"}


def test_older_flat_json_still_loads():
    old = {"solver": "heun", "steps": 6, "alpha": 0.5, "churn": 3.0, "s_min": 0.0, "s_max": "inf", "s_noise": 1.0,
           "eta": 0.3, "rtol": None, "atol": None, "process": "edm"}
    cfg = RunConfig.from_json(json.dumps(old))
    assert cfg.options == {"alpha": 0.5, "churn": 3.0, "s_min": 0.0, "s_max": math.inf, "s_noise": 1.0}
    assert cfg.churn == 3.0 and cfg.eta == 1.0  # flat reads: the option, else the old default
    assert RunConfig.from_json(cfg.to_json()) == cfg
    ancestral = RunConfig.from_dict({**old, "solver": "euler-ancestral"})
    assert ancestral.options == {"eta": 0.3, "s_noise": 1.0}


def test_replace_carries_only_identical_declarations():
    heun = RunConfig(solver="heun", churn=4.0, alpha=0.7)
    euler = heun.replace(solver="euler")
    assert euler.options["churn"] == 4.0 and "alpha" not in euler.options
    assert heun.replace(solver="dpm-solver-23").options["rtol"] == SOLVERS["dpm-solver-23"].option("rtol").default
    assert heun.with_options(alpha=0.3).options["alpha"] == 0.3
    assert hash(heun) == hash(RunConfig(solver="heun", options={"churn": 4.0, "alpha": 0.7}))


def test_every_solver_declares_consistent_metadata():
    for name, info in SOLVERS.items():
        assert info.order >= 1 and info.summary, name
        assert isinstance(info.rule, PerStep), name
        for opt in info.options:
            assert opt.help and (opt.optional or opt.validate(opt.default) == opt.default), (name, opt.name)


def test_readme_solver_table_is_the_registry():
    """README's solver table is `diffusion-explorer solvers --markdown`, row for row."""
    from pathlib import Path

    from explorer.commands.solvers import markdown_rows

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [row for row in markdown_rows() if row not in readme]
    assert not missing, "README.md is out of date; paste `diffusion-explorer solvers --markdown`:\n" + "\n".join(missing)
