"""Solvers: convergence orders on exact ground truth, and equalities between them (SPEC §4–5)."""
import math

import numpy as np
import pytest
import torch

from explorer.core.analytic import GaussianDenoiser, GMMDenoiser
from explorer.core.config import RunConfig
from explorer.core.plan import fast_orders, plan_run
from explorer.core.sampling import sample
from explorer.core.solvers import SOLVERS

GAUSS = GaussianDenoiser((3,), mean=0.3, std=0.5)
NOISE = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))

# Solver, theoretical order, discretization in which the asymptotic order shows at small N.
DETERMINISTIC = [
    ("euler", 1, "edm"), ("heun", 2, "edm"), ("ddim", 1, "edm"), ("dpm-solver-1", 1, "logsnr"),
    ("dpm-solver-2", 2, "logsnr"), ("dpm-solver-3", 3, "logsnr"), ("dpm-solver-2m", 2, "logsnr"),
    ("dpm-solver-3m", 2, "logsnr"), ("dpm-solver-3m-taylor", 3, "logsnr"), ("dpm-solver++2s", 2, "logsnr"),
    ("dpm-solver++2m", 2, "logsnr"), ("dpm-solver++3m", 2, "logsnr"), ("dpm-solver++3m-taylor", 3, "logsnr"),
    ("lms", 3, "edm"),
]


def gaussian_error(solver, process, disc, steps):
    cfg = RunConfig(solver=solver, process=process, disc=disc, steps=steps, final="sigma_min", dtype="float64",
                    sigma_min=0.05, sigma_max=80)
    traj = sample(GAUSS, cfg, noise=NOISE)
    y0 = traj.x[0] / traj.scale[0]
    exact = GAUSS.exact(y0, float(traj.sigma[0]), float(traj.sigma[-1]))
    return float((traj.samples - exact).abs().max())


def slope(ns, errs):
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0]


@pytest.mark.parametrize("process", ["vp", "ve", "edm"])
@pytest.mark.parametrize("solver,order,disc", DETERMINISTIC, ids=[s[0] for s in DETERMINISTIC])
def test_gaussian_convergence_order(solver, order, disc, process):
    ns = [16, 32, 64]
    errs = [gaussian_error(solver, process, disc, n) for n in ns]
    assert slope(ns, errs) >= order - 0.3, (errs, slope(ns, errs))
    assert errs[-1] < errs[0]


def test_mixture_orders_of_3m_and_taylor():
    """On a mixture against the reference, library 3M shows order ≈ 2 and the -taylor form ≈ 3."""
    gmm = GMMDenoiser(torch.tensor([[-1.0, 0.5], [1.0, -0.3], [0.2, 1.2]]), [0.3, 0.4, 0.25], [0.3, 0.5, 0.2], (2,))
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    base = dict(disc="logsnr", final="sigma_min", dtype="float64", sigma_min=0.05, sigma_max=80)
    ref = sample(gmm, RunConfig(solver="reference", steps=1, rtol=1e-11, atol=1e-12, **base), noise=noise).samples
    ns = [20, 40, 80]
    fitted = {}
    for solver in ("dpm-solver++3m", "dpm-solver++3m-taylor", "dpm-solver-3m", "dpm-solver-3m-taylor"):
        errs = [float((sample(gmm, RunConfig(solver=solver, steps=n, **base), noise=noise).samples - ref).abs().max()) for n in ns]
        fitted[solver] = slope(ns, errs)
    for lib, taylor in (("dpm-solver++3m", "dpm-solver++3m-taylor"), ("dpm-solver-3m", "dpm-solver-3m-taylor")):
        assert 1.6 <= fitted[lib] <= 2.5, fitted
        assert fitted[taylor] >= 2.7, fitted


def run(solver, **kw):
    cfg = dict(solver=solver, steps=12, dtype="float64")
    cfg.update(kw)
    return sample(GAUSS, RunConfig(**cfg), noise=NOISE)


@pytest.mark.parametrize("process", ["vp", "ve", "edm"])
def test_ddim_equals_dpm_solver_1(process):
    a, b = run("ddim", process=process), run("dpm-solver-1", process=process)
    assert torch.allclose(a.x, b.x, rtol=1e-12, atol=1e-12)


def test_euler_equals_ddim_on_edm():
    a, b = run("euler", process="edm"), run("ddim", process="edm")
    assert torch.allclose(a.x, b.x, rtol=1e-12, atol=1e-12)


def test_dpmpp_2m_sde_with_eta_zero_is_dpmpp_2m():
    for n in (5, 12):
        a, b = run("dpm-solver++2m-sde", eta=0.0, steps=n), run("dpm-solver++2m", steps=n)
        assert torch.allclose(a.x, b.x, rtol=1e-11, atol=1e-12)


def test_euler_ancestral_with_eta_zero_is_euler_on_edm():
    a, b = run("euler-ancestral", eta=0.0), run("euler")
    assert torch.allclose(a.x, b.x, rtol=1e-12, atol=1e-12)


def test_heun_equals_edm_algorithm_1_written_out():
    """EDM Algorithm 1 (σ(t) = t, s(t) = 1, Karras steps), step by step."""
    n, sigma_min, sigma_max, rho = 10, 0.002, 80.0, 7.0
    traj = run("heun", steps=n, process="edm", disc="edm", rho=rho)
    i = torch.arange(n, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    t = torch.cat([t, torch.zeros(1, dtype=torch.float64)])
    x = NOISE.to(torch.float64) * t[0]
    D = lambda x, s: GAUSS(x, torch.full((x.shape[0],), float(s), dtype=torch.float64))  # noqa: E731
    for k in range(n):
        d = (x - D(x, t[k])) / t[k]
        x_next = x + (t[k + 1] - t[k]) * d
        if t[k + 1] != 0:
            d2 = (x_next - D(x_next, t[k + 1])) / t[k + 1]
            x_next = x + (t[k + 1] - t[k]) * (0.5 * d + 0.5 * d2)
        x = x_next
        assert torch.allclose(traj.x[k + 1], x, rtol=1e-13, atol=1e-13)
    assert traj.nfe == 2 * n - 1


def test_nfe_is_counted_and_matches_prediction():
    for name, info in SOLVERS.items():
        if info.adaptive:
            continue
        for final in ("zero", "sigma_min", "denoise"):
            cfg = RunConfig(solver=name, steps=7, final=final, dtype="float64")
            traj = sample(GAUSS, cfg, noise=NOISE)
            assert traj.nfe == plan_run(cfg).nfe, (name, final)


def test_nfe_budget_picks_largest_steps():
    cfg = RunConfig(solver="heun", nfe=35, steps=None)
    assert plan_run(cfg).nfe == 35 and plan_run(cfg).n_steps == 18
    cfg = RunConfig(solver="dpm-solver-3", nfe=20, steps=None)
    assert plan_run(cfg).nfe <= 20 and plan_run(cfg.replace(nfe=22)).nfe == 22
    with pytest.raises(ValueError, match="too small"):
        plan_run(RunConfig(solver="heun", nfe=1, steps=None, final="sigma_min"))


def test_fast_orders_spend_nfe_exactly():
    assert fast_orders(6) == [3, 2, 1] and fast_orders(7) == [3, 3, 1] and fast_orders(8) == [3, 3, 2]
    for nfe in range(1, 25):
        assert sum(fast_orders(nfe)) == nfe
        for final in ("zero", "sigma_min", "denoise"):
            for disc in ("logsnr", "time-uniform", "edm"):
                cfg = RunConfig(solver="dpm-solver-fast", nfe=nfe, steps=None, final=final, disc=disc, dtype="float64")
                assert sample(GAUSS, cfg, noise=NOISE).nfe == nfe


def test_adaptive_solvers_reach_sigma_min_and_count_nfe():
    for name in ("dpm-solver-12", "dpm-solver-23"):
        cfg = RunConfig(solver=name, final="sigma_min", dtype="float64", sigma_min=0.05, rtol=1e-4, atol=1e-5)
        traj = sample(GAUSS, cfg, noise=NOISE)
        assert float(traj.sigma[-1]) == pytest.approx(0.05, rel=1e-3)
        exact = GAUSS.exact(traj.x[0] / traj.scale[0], float(traj.sigma[0]), float(traj.sigma[-1]))
        assert float((traj.samples - exact).abs().max()) < 1e-3
        assert traj.nfe == len(traj.eval_sigma) and traj.nfe % (2 if name.endswith("12") else 3) == 0


def test_step_to_zero_never_evaluates_at_zero():
    for name in SOLVERS:
        traj = sample(GAUSS, RunConfig(solver=name, steps=4, dtype="float64"), noise=NOISE)
        assert float(traj.sigma[-1]) == 0 and bool((traj.eval_sigma > 0).all()), name


def test_lower_order_final_rule():
    info = SOLVERS["dpm-solver++3m"]
    assert info.step_orders(6, True) == [1, 2, 3, 3, 2, 1]
    assert info.step_orders(6, False) == [1, 2, 3, 3, 3, 3]
    assert info.step_orders(12, True) == [1, 2] + [3] * 10


def test_reference_matches_exact_solution():
    cfg = RunConfig(solver="reference", steps=3, final="sigma_min", sigma_min=0.05, process="vp")
    traj = sample(GAUSS, cfg, noise=NOISE)
    exact = GAUSS.exact(traj.x[0] / traj.scale[0], float(traj.sigma[0]), float(traj.sigma[-1]))
    assert traj.x.dtype == torch.float64
    assert float((traj.samples - exact).abs().max()) < 1e-6


def test_stochastic_churn_runs_and_differs_from_deterministic():
    a = run("heun", churn=10.0, s_min=0.05, s_max=50)
    b = run("heun")
    assert not torch.allclose(a.x[-1], b.x[-1])
    assert torch.equal(a.x, run("heun", churn=10.0, s_min=0.05, s_max=50).x)
