"""Solvers: convergence orders on exact ground truth, and equalities between them (SPEC §4–5)."""

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


def gaussian_error(solver, process, disc, steps, options=None, lower_order_final=True, sigma_range=(0.05, 80)):
    cfg = RunConfig(solver=solver, process=process, disc=disc, steps=steps, final="sigma_min", dtype="float64",
                    sigma_min=sigma_range[0], sigma_max=sigma_range[1], options=options or {},
                    lower_order_final=lower_order_final)
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


# Every other deterministic solver is tested from its declaration alone: its expected order on
# its own order_grid. Lower-order final steps are off (UniPC lowers them always, which caps the
# global order at the last step's); a few converge to their order slowly and get longer runs.
DECLARED = [name for name, info in SOLVERS.items()
            if name not in {s[0] for s in DETERMINISTIC} and not info.stochastic and not info.adaptive
            and name != "dpm-solver-fast"]
SLOW = {"ipndm-v": [64, 128, 256], "deis-2": [64, 128, 256], "deis-3": [64, 128, 256], "dpm-solver++3s": [32, 64, 128],
        "unipc-3": [32, 64, 128]}
# Options that change the method, each against the order its solver declares (+1 with UniC).
VARIANTS = [
    ("unipc-3", {"variant": "bh1"}, 4), ("unipc-3", {"prediction": "noise"}, 4), ("unipc-2", {"variant": "bh1"}, 3),
    ("unipc-2", {"corrector": False}, 2), ("unipc-1", {"corrector": False}, 1),
    ("deis-3", {"basis": "rho"}, 3), ("deis-3", {"basis": "logrho"}, 3),
    ("dpm-solver++3s", {"node2": "diffusers"}, 3),
    ("dpm-solver++2m", {"solver_type": "heun"}, 2), ("dpm-solver-2m", {"solver_type": "heun"}, 2),
    ("dpm-solver++2m", {"corrector": True}, 3), ("dpm-solver-2m", {"corrector": True}, 3),
    ("pndm", {"prk_nodes": "grid"}, 2),
]


@pytest.mark.parametrize("process", ["vp", "ve", "edm"])
@pytest.mark.parametrize("solver", DECLARED)
def test_declared_order_on_the_gaussian(solver, process):
    info = SOLVERS[solver]
    ns = SLOW.get(solver, [16, 32, 64])
    errs = [gaussian_error(solver, process, info.order_grid, n, lower_order_final=False) for n in ns]
    assert slope(ns, errs) >= info.order - 0.3, (errs, slope(ns, errs))


@pytest.mark.parametrize("solver,options,order", VARIANTS, ids=[f"{s}-{'-'.join(map(str, o.values()))}" for s, o, _ in VARIANTS])
def test_option_variants_keep_their_order(solver, options, order):
    ns = SLOW.get(solver, [16, 32, 64])
    errs = [gaussian_error(solver, "vp", SOLVERS[solver].order_grid, n, options, lower_order_final=False) for n in ns]
    assert slope(ns, errs) >= order - 0.3, (errs, slope(ns, errs))


def test_ipndm_fixed_weights_order_4_on_uniform_steps_about_2_on_rho_7():
    """The contrast iPNDM shows: its weights assume equal steps; ρ = 7 steps are not."""
    uniform = dict(sigma_range=(0.2, 2.0), lower_order_final=False)
    ns = [8, 16, 32]
    for solver in ("ipndm", "ipndm-v", "plms", "pndm"):
        assert slope(ns, [gaussian_error(solver, "edm", "time-uniform", n, **uniform) for n in ns]) >= 3.7, solver
    ns = [32, 64, 128]
    rho7 = {s: slope(ns, [gaussian_error(s, "edm", "edm", n, sigma_range=(0.002, 80)) for n in ns]) for s in ("ipndm", "ipndm-v")}
    assert 1.7 <= rho7["ipndm"] <= 2.5 and rho7["ipndm-v"] >= 3.3, rho7


def test_pndm_grid_nodes_at_the_t_midpoints_are_the_default_pndm():
    """prk_nodes=grid only moves the Runge–Kutta midpoints onto the grid: on a grid that holds
    the default's t-midpoints it is the default pndm (same states at shared points, same NFE)."""
    cfg = RunConfig(solver="pndm", process="vp", disc="edm", steps=8, final="sigma_min", dtype="float64")
    plan = plan_run(cfg)
    t, sigma = plan.t, lambda v: float(plan.process.sigma(v))
    with_mids = [v for i, ti in enumerate(t) for v in ([ti, 0.5 * (ti + t[i + 1])] if i < 3 else [ti])]
    default = sample(GAUSS, cfg.replace(sigmas=tuple(map(sigma, t))), noise=NOISE)
    grid = sample(GAUSS, cfg.replace(sigmas=tuple(map(sigma, with_mids)), steps=11, options={"prk_nodes": "grid"}),
                  noise=NOISE)
    assert default.nfe == grid.nfe == 8 + 9
    shared = [0, 2, 4] + list(range(6, 12))
    assert torch.allclose(grid.x[shared], default.x, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(grid.x[1], grid.x[2])  # the midpoint states are events of their own


def test_v_combination_is_a_first_order_convention():
    """combine=v (diffusers' PNDM on v models) turns earlier v outputs into ε as if they had been
    evaluated at the current node: it converges, at first order only, where eps keeps order 2."""
    ns = [16, 32, 64]
    for solver in ("plms", "pndm"):
        slopes = {c: slope(ns, [gaussian_error(solver, "vp", "edm", n, {"combine": c}, lower_order_final=False)
                                for n in ns]) for c in ("v", "eps")}
        assert 0.7 <= slopes["v"] <= 1.3 and slopes["eps"] >= 1.7, (solver, slopes)
    assert SOLVERS["pndm"].resolve_options({}) == {"prk_nodes": "midpoint", "combine": "eps"}


def mixture_and_reference():
    """A 3-component mixture, latents, the run settings and the RK45 reference (float64)."""
    gmm = GMMDenoiser(torch.tensor([[-1.0, 0.5], [1.0, -0.3], [0.2, 1.2]]), [0.3, 0.4, 0.25], [0.3, 0.5, 0.2], (2,))
    noise = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    base = dict(disc="logsnr", final="sigma_min", dtype="float64", sigma_min=0.05, sigma_max=80)
    ref = sample(gmm, RunConfig(solver="reference", steps=1, rtol=1e-11, atol=1e-12, **base), noise=noise).samples
    return gmm, noise, base, ref


def test_unic_raises_the_order_of_dpm_solver_pp_2m_on_a_mixture():
    """UniC after DPM-Solver++(2M): about one order more, at the same NFE."""
    gmm, noise, base, ref = mixture_and_reference()
    ns = [20, 40, 80]
    fitted = {}
    for corrector in (False, True):
        runs = [sample(gmm, RunConfig(solver="dpm-solver++2m", steps=n, options={"corrector": corrector}, **base), noise=noise)
                for n in ns]
        fitted[corrector] = slope(ns, [float((r.samples - ref).abs().max()) for r in runs])
        assert [r.nfe for r in runs] == ns
    assert fitted[True] - fitted[False] >= 0.8 and fitted[False] >= 1.8, fitted


def test_restart_jumps_are_recorded_and_nfe_is_predicted():
    cfg = RunConfig(solver="restart", steps=10, dtype="float64", options={"restart_k": 2, "restart_steps": 3,
                                                                          "restart_min": 0.3, "restart_max": 2.0})
    traj = sample(GAUSS, cfg, noise=NOISE)
    sig = traj.sigma.tolist()
    rises = [k for k in range(1, len(sig)) if sig[k] > sig[k - 1]]
    assert len(rises) == 2 and all(sig[k] == pytest.approx(2.0) for k in rises)
    assert traj.nfe == plan_run(cfg).nfe == 2 * 10 - 1 + 2 * 2 * 3
    assert len(sig) == 1 + 10 + 2 * (1 + 3)
    plain = sample(GAUSS, cfg.with_options(restart_k=0), noise=NOISE)
    assert torch.allclose(plain.samples, run("heun", steps=10).samples, rtol=1e-12, atol=1e-12)


def test_mixture_orders_of_3m_and_taylor():
    """On a mixture against the reference, library 3M shows order ≈ 2 and the -taylor form ≈ 3."""
    gmm, noise, base, ref = mixture_and_reference()
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


# Options whose evaluations the plan must foresee beyond the defaults: Restart with three
# intervals, the last of which (9.5:9.6) snaps to σ 9.72 on the 7-step grid and is left out.
NFE_VARIANTS = [("restart", {"restart_intervals": "0.06:0.3:2:3,0.5:2.6:1:2,9.5:9.6:1:1"})]


def test_nfe_is_counted_and_matches_prediction():
    runs = [(name, {}) for name, info in SOLVERS.items() if not info.adaptive] + NFE_VARIANTS
    for name, options in runs:
        for final in ("zero", "sigma_min", "denoise"):
            cfg = RunConfig(solver=name, steps=7, final=final, dtype="float64", options=options)
            traj = sample(GAUSS, cfg, noise=NOISE)
            assert traj.nfe == plan_run(cfg).nfe, (name, options, final)


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
    assert info.step_orders(12, True, {"final_rule": "diffusers-15"}) == [1, 2] + [3] * 8 + [2, 1]
    assert SOLVERS["unipc-3"].step_orders(40, True)[-2:] == [2, 1]  # UniPC: always
    assert SOLVERS["plms"].step_orders(6, True) == [2, 2, 3, 4, 4, 4]


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


GRID_NODES = {"nodes": "grid"}


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
@pytest.mark.parametrize("solver,k", [("dpm-solver-2", 2), ("dpm-solver-3", 3), ("dpm-solver++2s", 2),
                                      ("dpm-solver++3s", 3)])
def test_grid_nodes_on_a_logsnr_grid_are_the_interval_nodes(solver, k, solver_type):
    """On k·M intervals uniform in λ, nodes=grid puts a block's inner nodes at the λ fractions
    j/k where nodes=interval puts them on M intervals: the same states at the same NFE."""
    gmm = GMMDenoiser(torch.tensor([[-1.0, 0.5], [1.0, -0.3]]), [0.3, 0.4], [0.6, 0.4], (2,))
    noise = torch.randn(3, 2, generator=torch.Generator().manual_seed(2))
    base = dict(solver=solver, process="vp", disc="logsnr", final="sigma_min", dtype="float64", lower_order_final=False)
    coarse = sample(gmm, RunConfig(steps=4, options={"solver_type": solver_type}, **base), noise=noise)
    fine = sample(gmm, RunConfig(steps=4 * k, options={"solver_type": solver_type, **GRID_NODES}, **base), noise=noise)
    assert fine.nfe == coarse.nfe == 4 * k
    assert torch.allclose(fine.x[::k], coarse.x, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(fine.x[1::k], coarse.x[1:], rtol=1e-3, atol=1e-3)  # the inner states are its own


def test_grid_nodes_rule():
    """nodes=grid: one evaluation a step, blocks ramping 1, 2, 3 (diffusers' get_order_list)."""
    info = SOLVERS["dpm-solver++3s"]
    assert info.step_orders(7, True, GRID_NODES) == [1, 2, 3, 1, 2, 3, 1]
    assert info.step_orders(6, True, GRID_NODES) == [1, 2, 3, 1, 2, 1]
    assert info.step_orders(6, False, GRID_NODES) == [1, 2, 3, 1, 2, 3]
    assert SOLVERS["dpm-solver-2"].step_orders(5, False, GRID_NODES) == [1, 2, 1, 2, 1]
    assert info.nfe(7, True, GRID_NODES) == 7 and info.nfe(7, True) == 19
    assert info.rule.applies_lower_order_final(GRID_NODES) and not info.rule.applies_lower_order_final({})
    plan = plan_run(RunConfig(solver="dpm-solver++3s", steps=8, options=GRID_NODES))
    assert plan.orders == [1, 2, 3, 1, 2, 3, 1, 1] and plan.nfe == 8  # the step to σ = 0: a block of its own
    assert plan_run(RunConfig(solver="dpm-solver-3", nfe=10, steps=None, options=GRID_NODES)).n_steps == 10
    bad = RunConfig(solver="dpm-solver++3s", sigmas=(10.0, 5.0, 1.0, 0.5), orders=(1, 3, 1), options=GRID_NODES)
    with pytest.raises(ValueError, match="orders 1, 2, 3 in turn"):
        sample(GAUSS, bad, noise=NOISE)
