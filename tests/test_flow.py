"""Rectified flow: s(t) = 1 − t, σ(t) = t/(1 − t); velocity adapter; SD3/FLUX shift as σ → shift·σ."""
from __future__ import annotations

import math

import pytest
import torch

from explorer.core.analytic import GaussianDenoiser
from explorer.core.config import RunConfig
from explorer.core.flow import FlowSchedule
from explorer.core.grids import dynamic_shift, shifted
from explorer.core.plan import plan_run
from explorer.core.precond import FlowVelocityDenoiser
from explorer.core.sampling import sample
from explorer.core.sweep import fit_order

GAUSS = GaussianDenoiser(shape=(4,), mean=0.3, std=0.5)


def _error(solver: str, steps: int) -> float:
    config = RunConfig(process="rf", solver=solver, steps=steps, final="sigma_min", dtype="float64", device="cpu",
                       batch=16, fast=False, sigma_min=0.05, sigma_max=20.0)
    traj = sample(GAUSS, config)
    y0 = traj.noise.to(torch.float64) * float(traj.sigma[0])
    exact = GAUSS.exact(y0, float(traj.sigma[0]), float(traj.sigma[-1]))
    return float((traj.samples - exact).pow(2).mean().sqrt())


def test_flow_schedule_is_the_straight_path():
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    sched = FlowSchedule()
    sigma = sched.sigma(t)
    assert torch.allclose(1 / (1 + sigma), 1 - t)  # s(t) = 1 − t
    assert torch.allclose(sched.sigma_inv(sigma), t)
    config = RunConfig(process="rf", steps=4)
    plan = plan_run(config)
    for ti in plan.t[:-1]:
        assert float(plan.process.s(ti)) == pytest.approx(1 - ti, rel=1e-14)
        assert float(plan.process.s_deriv(ti)) == pytest.approx(-1.0, rel=1e-12)


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2)])
def test_orders_on_the_exact_gaussian(solver, order):
    steps = [8, 16, 32]
    errors = [_error(solver, n) for n in steps]
    assert fit_order(steps, errors) == pytest.approx(order, abs=0.3)


@pytest.mark.parametrize("shift", [3.0, 0.5, dynamic_shift(1024)])
def test_shift_multiplies_sigma(shift):
    base = plan_run(RunConfig(process="rf", steps=6))
    moved = plan_run(RunConfig(process="rf", steps=6, shift=shift))
    for t0, t1 in zip(base.t[:-1], moved.t[:-1]):
        s0, s1 = float(base.process.sigma(t0)), float(moved.process.sigma(t1))
        assert s1 == pytest.approx(shift * s0, rel=1e-13)
        assert t1 == pytest.approx(shift * t0 / (1 + (shift - 1) * t0), rel=1e-13)  # SD3's t' formula
    assert shifted([2.0, 1.0, 0.0], shift) == (2.0 * shift, shift, 0.0)  # explicit grids: exactly


def test_dynamic_shift_is_exp_mu():
    assert dynamic_shift(256) == pytest.approx(math.exp(0.5))
    assert dynamic_shift(4096) == pytest.approx(math.exp(1.15))


def test_velocity_adapter_gives_the_denoiser():
    def velocity(x_t, sigma):  # v = ε − x₀ of the exact Gaussian, seen on x_t = (1 − t) x₀ + t ε
        sig = sigma.reshape(-1, 1)
        t = sig / (1 + sig)
        x = x_t / (1 - t)
        x0 = GAUSS(x, sigma)
        eps = (x - x0) / sig
        return eps - x0

    den = FlowVelocityDenoiser(velocity, shape=(4,))
    x = torch.randn(5, 4, dtype=torch.float64) * 3
    sigma = torch.full((5,), 2.5, dtype=torch.float64)
    assert torch.allclose(den(x, sigma), GAUSS(x, sigma), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="scaling='rf'"):
        FlowVelocityDenoiser(velocity, shape=(4,), scaling="vp")
