"""Processes σ(t), s(t) and discretizations (SPEC §1–2)."""
import math

import pytest
import torch

from explorer.core.discretization import (
    DEFAULT_SIGMA_RANGE, iddpm_sigmas, nominal_sigma_range, sigma_grid, time_grid,
)
from explorer.core.plan import make_process
from explorer.core.config import RunConfig
from explorer.core.process import LinearSchedule, Process, VESchedule, VPSchedule, make_schedule

SCHEDULES = [VPSchedule(), VPSchedule.from_range(0.002, 80), VESchedule(), LinearSchedule()]


@pytest.mark.parametrize("sched", SCHEDULES, ids=lambda s: s.name)
def test_sigma_inverse_and_derivative(sched):
    t = torch.linspace(0.01, 1.0, 50, dtype=torch.float64)
    assert torch.allclose(sched.sigma_inv(sched.sigma(t)), t, rtol=1e-12)
    h = 1e-6
    numeric = (sched.sigma(t + h) - sched.sigma(t - h)) / (2 * h)
    assert torch.allclose(sched.sigma_deriv(t), numeric, rtol=1e-6)


def test_vp_betas_from_range():
    lo, hi = DEFAULT_SIGMA_RANGE["vp"]
    vp = VPSchedule.from_range(lo, hi)
    assert vp.beta_d == pytest.approx(19.9, rel=1e-9) and vp.beta_min == pytest.approx(0.1, rel=1e-9)
    edm = VPSchedule.from_range(0.002, 80)
    assert edm.beta_d == pytest.approx(17.538, abs=5e-4) and edm.beta_min == pytest.approx(-0.00477, abs=5e-6)
    assert float(edm.sigma(1e-3)) == pytest.approx(0.002, rel=1e-12)
    assert float(edm.sigma(1.0)) == pytest.approx(80, rel=1e-12)


def test_vp_scaling_derivative():
    proc = Process(VPSchedule(), "vp")
    t = torch.linspace(0.05, 1, 20, dtype=torch.float64)
    h = 1e-6
    assert torch.allclose(proc.s_deriv(t), (proc.s(t + h) - proc.s(t - h)) / (2 * h), rtol=1e-6)
    assert torch.allclose(proc.s(t), 1 / (1 + proc.sigma(t) ** 2).sqrt())


def test_scaling_vp_under_linear_schedule():
    proc = make_process(RunConfig(process="edm", scaling="vp"), (0.002, 80))
    t = torch.tensor([0.5, 2.0], dtype=torch.float64)
    assert torch.allclose(proc.s(t), 1 / (1 + t**2).sqrt())


def test_edm_grid_formula():
    sig = sigma_grid("edm", 18, 0.002, 80, 7.0)
    i = torch.arange(18, dtype=torch.float64)
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert torch.allclose(sig, expected, rtol=1e-15)
    assert sig[0] == pytest.approx(80) and sig[-1] == pytest.approx(0.002)


def test_iddpm_grid_reproduces_j0():
    u = iddpm_sigmas()
    assert u[-1] == 0 and bool((u[:-1] > 0).all()) and bool((u[:-1] > u[1:]).all())
    kept = u[(u >= 0.002) & (u <= 81)]
    j0 = int((u > 81).sum())
    assert j0 == 8  # the paper's j₀ = 8 (SPEC §2)
    sig = sigma_grid("iddpm", 10, 0.002, 81, 7)
    assert sig[0] == kept[0] and sig[-1] == kept[-1]


def test_ve_and_logsnr_are_geometric():
    for disc in ("ve", "logsnr"):
        sig = sigma_grid(disc, 12, 0.02, 100, 7)
        ratios = sig[1:] / sig[:-1]
        assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-12)


def test_time_uniform_vp_spans_one_to_epsilon():
    proc = make_process(RunConfig(process="vp", disc="time-uniform"), DEFAULT_SIGMA_RANGE["vp"])
    t = time_grid("time-uniform", 11, proc, *DEFAULT_SIGMA_RANGE["vp"])
    assert t[0] == pytest.approx(1.0, rel=1e-12) and t[-1] == pytest.approx(1e-3, rel=1e-9)
    assert torch.allclose(t[1:] - t[:-1], (t[1] - t[0]).expand(10), rtol=1e-9)


def test_time_quadratic_is_uniform_in_sqrt_t():
    proc = make_process(RunConfig(process="ve", disc="time-quadratic"), (0.02, 100))
    t = time_grid("time-quadratic", 9, proc, 0.02, 100)
    r = t.sqrt()
    assert torch.allclose(r[1:] - r[:-1], (r[1] - r[0]).expand(8), rtol=1e-9)


def test_range_defaults_and_clamping():
    assert nominal_sigma_range("edm", "linear", None, None) == (0.002, 80)
    assert nominal_sigma_range("logsnr", "ve", None, None) == (0.02, 100)
    assert nominal_sigma_range("edm", "linear", None, None, (0.01, 50)) == (0.01, 50)
    with pytest.raises(ValueError, match="smaller"):
        nominal_sigma_range("edm", "linear", 5.0, 1.0)
    with pytest.raises(ValueError, match="clamping"):
        nominal_sigma_range("edm", "linear", 60, 70, (0.002, 50))


@pytest.mark.parametrize("final,extra", [("zero", 1), ("sigma_min", 1), ("denoise", 1)])
def test_final_modes_grid_length(final, extra):
    from explorer.core.plan import plan_run

    plan = plan_run(RunConfig(steps=7, final=final))
    assert plan.n_steps == 7
    assert (plan.t[-1] == 0) == (final == "zero")
    assert plan.nfe == (13 if final == "zero" else 14 + (final == "denoise"))
