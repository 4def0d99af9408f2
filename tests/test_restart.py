"""Restart with several intervals (issue #11): the interval list option, its NFE plan, the
order of the restarts, its noise, and the single interval of older configs unchanged."""
from __future__ import annotations

import json

import pytest
import torch

from explorer.core.analytic import GaussianDenoiser
from explorer.core.config import RunConfig
from explorer.core.plan import plan_run
from explorer.core.sampling import sample
from explorer.core.solvers import SOLVERS
from explorer.core.solvers.rules import restart_schedule

GAUSS = GaussianDenoiser((3,), mean=0.3, std=0.5)
NOISE = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
# On the 10-step EDM grid (σ … 4.07, 1.50, 0.47 …): 1.5 snaps to 1.50 and runs first, 0.3 to 0.47;
# 4:4.05 snaps to 4.07, above its σ_max, so the grid leaves it out.
TWO = "0.3:2:2:3,1.5:10:1:2,4:4.05:3:2"


def restart(steps: int = 10, **options) -> RunConfig:
    return RunConfig(solver="restart", steps=steps, dtype="float64", options=options)


def rises(traj) -> list[float]:
    sig = traj.sigma.tolist()
    return [sig[k] for k in range(1, len(sig)) if sig[k] > sig[k - 1]]


def test_interval_text_parses_validates_and_round_trips():
    opt = SOLVERS["restart"].option("restart_intervals")
    value = opt.validate(opt.parse(" 0.06:0.3:2:3 , 0.3:2.0:1:3"))
    assert value == ((0.06, 0.3, 2, 3), (0.3, 2.0, 1, 3))
    assert opt.text(value) == "0.06:0.3:2:3,0.3:2:1:3" and opt.validate(opt.text(value)) == value
    assert opt.validate([[0.1, 1, 1, 2]]) == ((0.1, 1.0, 1, 2),)  # JSON's lists of lists
    assert opt.parse("none") is None and opt.validate("") is None
    for text, words in (("0.3:2:1", "Restart interval 1 needs 4 numbers σ_min:σ_max:K:steps"),
                        ("0.3:2:1:3,0.1:1:101:3", "Restart interval 2: K must satisfy 0 ≤ K ≤ 100 (got 101)."),
                        ("0.3:2:1.5:3", "Restart interval 1: K must be a whole number"),
                        ("0.3:x:1:3", "Restart interval 1: σ_max must be a number (got 'x')")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            opt.validate(opt.parse(text))
    with pytest.raises(ValueError, match=r"Restart interval 2 needs σ_min < σ_max \(got 3 ≥ 2\)"):
        restart(restart_intervals="0.1:1:1:1,3:2:1:1")
    with pytest.raises(ValueError, match="Restart intervals replace the single interval: leave K at the default."):
        restart(restart_intervals="0.1:1:1:1", restart_k=4)


def test_schedule_follows_the_main_path_and_keeps_list_order_at_a_shared_point():
    plan = plan_run(restart())
    cfg = restart(restart_intervals=TWO + ",0.4:3:1:1")  # 0.4 snaps to 0.47 too, after 0.3's interval
    placed = [(round(plan.t[j], 2), i.sigma_max) for j, i in restart_schedule(plan.t, float, cfg.options)]  # EDM: σ = t
    assert placed == [(1.5, 10.0), (0.47, 2.0), (0.47, 3.0)]


def test_two_intervals_spend_the_planned_nfe_and_jump_to_both_sigma_max():
    cfg = restart(restart_intervals=TWO)
    traj = sample(GAUSS, cfg, noise=NOISE)
    assert traj.nfe == plan_run(cfg).nfe == 2 * 10 - 1 + 2 * 1 * 2 + 2 * 2 * 3
    assert rises(traj) == pytest.approx([10.0, 2.0, 2.0])
    assert len(traj.sigma) == 1 + 10 + 1 * (1 + 2) + 2 * (1 + 3)
    for final in ("sigma_min", "denoise"):
        other = cfg.replace(final=final)
        assert sample(GAUSS, other, noise=NOISE).nfe == plan_run(other).nfe, final


def test_k_zero_on_every_interval_is_plain_heun():
    plain = sample(GAUSS, restart(restart_intervals="0.3:2:0:3,1.5:10:0:2"), noise=NOISE)
    heun = sample(GAUSS, RunConfig(solver="heun", steps=10, dtype="float64"), noise=NOISE)
    assert plain.nfe == heun.nfe == 19 and not rises(plain)
    assert torch.allclose(plain.x, heun.x, rtol=1e-12, atol=1e-12)


def test_jump_noise_comes_from_the_run_seed():
    cfg = restart(restart_intervals=TWO).replace(seed=3, batch=3)
    a, b = sample(GAUSS, cfg), sample(GAUSS, cfg)
    assert torch.equal(a.x, b.x)
    assert not torch.equal(sample(GAUSS, cfg.replace(seed=4)).samples, a.samples)


# A restart run as written before the interval list (its options JSON has no restart_intervals),
# and its samples then (float64, this Gaussian; seed 5).
OLD_JSON = {"solver": "restart", "steps": 6, "batch": 2, "seed": 5, "dtype": "float64", "process": "edm",
            "options": {"restart_k": 2, "restart_max": 2.0, "restart_min": 0.3, "restart_steps": 2}}
OLD_SAMPLES = [[-0.39271010950808, -0.32161073843558224, 1.0770282131630304],
               [0.44557599699905903, -0.01577277682525946, 1.5853625636201896]]


def test_single_interval_configs_still_load_and_give_the_same_samples():
    old = RunConfig.from_json(json.dumps(OLD_JSON))
    assert old.options["restart_intervals"] is None and RunConfig.from_json(old.to_json()) == old
    traj = sample(GAUSS, old)
    assert traj.nfe == 2 * 6 - 1 + 2 * 2 * 2
    assert torch.allclose(traj.samples, torch.tensor(OLD_SAMPLES, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    listed = RunConfig.from_dict({**OLD_JSON, "options": {"restart_intervals": [[0.3, 2.0, 2, 2]]}})
    assert torch.equal(sample(GAUSS, listed).samples, traj.samples)


def test_cli_flag_stores_the_intervals_in_the_run_file(tmp_path, capsys):
    from explorer.cli import main
    from explorer.core.trajectory import Trajectory

    out = tmp_path / "run.safetensors"
    assert main(["sample", "--model", "gaussian", "--solver", "restart", "--restart-intervals", "0.3:2:1:2,1.5:10:1:1",
                 "--steps", "6", "--batch", "2", "--out", str(out)]) == 0
    config = RunConfig.from_json(Trajectory.load(out).metadata()["config"])
    assert config.options["restart_intervals"] == ((0.3, 2.0, 1, 2), (1.5, 10.0, 1, 1))
    capsys.readouterr()
    assert main(["sample", "--model", "gaussian", "--solver", "restart", "--restart-intervals", "0.3:2",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Restart interval 1 needs 4 numbers" in err[0]
