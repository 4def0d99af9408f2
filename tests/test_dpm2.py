"""DPM-2 (k-diffusion's sample_dpm_2): the published step, its grid midpoints, churn and NFE.

Its order is checked with every registered solver's in tests/test_solvers.py
(``test_declared_order_on_the_gaussian``); its diffusers loop in tests/test_diffusers_presets.py.
"""
import math

import pytest
import torch

from explorer.core.analytic import GaussianDenoiser
from explorer.core.config import RunConfig
from explorer.core.plan import plan_run
from explorer.core.sampling import sample
from explorer.core.solvers.dpm2 import Step, dpm2_steps

GAUSS = GaussianDenoiser((3,), mean=0.3, std=0.5)
NOISE = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
KARRAS6 = (80.0, 26.1, 7.3, 1.66, 0.27, 0.03, 0.0)


def D(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return GAUSS(x, torch.full((x.shape[0],), float(sigma), dtype=torch.float64))


def published_dpm2(x: torch.Tensor, sigmas: list[float]) -> list[torch.Tensor]:
    """Karras et al.'s / k-diffusion's DPM-2 written out: Euler to the geometric mean of σ_i and
    σ_{i+1}, then the whole step with the slope there; Euler on the step to σ = 0."""
    states = [x]
    for sig, nxt in zip(sigmas, sigmas[1:]):
        d = (x - D(x, sig)) / sig
        if nxt == 0:
            x = x + (nxt - sig) * d
        else:
            mid = math.exp(0.5 * (math.log(sig) + math.log(nxt)))
            x_mid = x + (mid - sig) * d
            x = x + (nxt - sig) * (x_mid - D(x_mid, mid)) / mid
        states.append(x)
    return states


def run(**kw):
    cfg = dict(solver="dpm2", dtype="float64", batch=NOISE.shape[0])
    cfg.update(kw)
    return sample(GAUSS, RunConfig(**cfg), noise=NOISE)


@pytest.mark.parametrize("process", ["edm", "vp"])
def test_dpm2_is_the_published_step(process):
    """Every state of a 10-step run (EDM grid, last step to 0) is the written-out method's; under
    VP the unscaled states x/s are, since DPM-2 steps y = x/s in σ whatever the process."""
    traj = run(process=process, disc="edm", steps=10)
    ref = published_dpm2(NOISE * float(traj.sigma[0]), traj.sigma.tolist())
    for k, expected in enumerate(ref):
        assert torch.allclose(traj.x[k] / traj.scale[k], expected, rtol=1e-12, atol=1e-12), k
    assert traj.nfe == 2 * 10 - 1 == plan_run(RunConfig(solver="dpm2", steps=10)).nfe


def test_dpm2_equals_k_diffusion_when_installed():
    k_sampling = pytest.importorskip("k_diffusion.sampling")
    traj = run(sigmas=KARRAS6)
    model = lambda x, s: D(x, float(s[0]))  # noqa: E731
    sigmas = torch.tensor(KARRAS6, dtype=torch.float64)
    ref = k_sampling.sample_dpm_2(model, NOISE * KARRAS6[0], sigmas, disable=True)
    assert torch.allclose(traj.samples, ref, rtol=1e-12, atol=1e-12)


def test_grid_midpoints_are_the_geometric_ones_when_the_grid_holds_them():
    """midpoint=grid on σ_0, σ_mid,1, σ_1, …, 0 walks the same run as the geometric midpoints
    on σ_0, σ_1, …, 0, records each midpoint's Euler state, and costs the same."""
    outer = run(sigmas=KARRAS6)
    grid = [KARRAS6[0]]
    for a, b in zip(KARRAS6[:-2], KARRAS6[1:-1]):
        grid += [math.sqrt(a * b), b]
    inner = run(sigmas=tuple(grid) + (0.0,), options={"midpoint": "grid"})
    assert inner.nfe == outer.nfe == 2 * 6 - 1 == len(inner.sigma) - 1
    ends = list(range(0, len(grid), 2)) + [len(grid)]  # the step ends, and σ = 0
    assert torch.allclose(inner.x[ends], outer.x, rtol=1e-12, atol=1e-12)
    x0, d0 = outer.x[0], (outer.x[0] - D(outer.x[0], KARRAS6[0])) / KARRAS6[0]
    assert torch.allclose(inner.x[1], x0 + (grid[1] - grid[0]) * d0, rtol=1e-12, atol=1e-12)


def test_steps_over_a_grid_of_midpoints():
    assert dpm2_steps([5.0, 2.0, 1.0, 0.0], True) == [Step(0, 2, mid=1), Step(2, 3, euler=True)]
    assert dpm2_steps([5.0, 1.0, 0.0], True) == [Step(0, 1, euler=True), Step(1, 2, euler=True)]  # no pair ends at 0
    assert dpm2_steps([5.0, 3.0, 2.0, 1.5, 1.0], True) == [Step(0, 2, mid=1), Step(2, 4, mid=3)]
    assert dpm2_steps([5.0, 2.0, 0.0], False) == [Step(0, 1), Step(1, 2, euler=True)]


def test_grid_midpoints_need_an_explicit_grid():
    with pytest.raises(ValueError, match="explicit σ grid"):
        plan_run(RunConfig(solver="dpm2", steps=5, options={"midpoint": "grid"}))


def test_churn_adds_noise_and_no_evaluations():
    plain, churned = run(sigmas=KARRAS6), run(sigmas=KARRAS6, churn=5.0)
    again = run(sigmas=KARRAS6, churn=5.0)
    assert churned.nfe == plain.nfe
    assert not torch.allclose(churned.samples, plain.samples) and torch.equal(churned.samples, again.samples)
