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


def _edm_iddpm_table_float64(M=1000, C_1=0.001, C_2=0.008):
    """EDM's ablation_sampler iddpm table, its formula run with a float64 j (the oracle)."""
    u = torch.zeros(M + 1, dtype=torch.float64)
    alpha_bar = lambda j: (0.5 * math.pi * j / M / (C_2 + 1)).sin() ** 2  # noqa: E731
    for j in torch.arange(M, 0, -1, dtype=torch.float64):
        i = int(j)
        u[i - 1] = ((u[i] ** 2 + 1) / (alpha_bar(j - 1) / alpha_bar(j)).clip(min=C_1) - 1).sqrt()
    return u


def test_iddpm_table_is_edms_formula_in_float64():
    u, oracle = iddpm_sigmas(), _edm_iddpm_table_float64()
    assert u.dtype == torch.float64
    rel = ((u[:-1] - oracle[:-1]) / oracle[:-1]).abs().max().item()
    assert rel < 1e-13, rel  # measured 1.9e-15 (libm sin vs torch sin, last bits)
    # A float32 ᾱ, as EDM's integer-j code computes, is far off near j = M: float64 matters.
    j32 = torch.arange(1001, dtype=torch.float32)
    ab32 = ((0.5 * math.pi * j32) / 1000 / 1.008).sin().double() ** 2
    assert abs(ab32[999] / ab32[1000] - (oracle[998] ** 2 + 1) / (oracle[999] ** 2 + 1)) > 1e-9


def test_iddpm_grid_on_edm_steps_matches_the_oracle():
    oracle = _edm_iddpm_table_float64()
    kept = oracle[(oracle >= 0.002) & (oracle <= 81)]
    idx = ((len(kept) - 1) / 17 * torch.arange(18, dtype=torch.float64)).round().to(torch.int64)
    torch.testing.assert_close(sigma_grid("iddpm", 18, 0.002, 81, 7), kept[idx], rtol=1e-13, atol=0)


def test_iddpm_table_refuses_impossible_constants():
    for M in (0, -5, 10**7, 1.5, True):
        with pytest.raises(ValueError, match="M must be an integer"):
            iddpm_sigmas(M)


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
