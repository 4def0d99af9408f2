"""Comparisons: shared latents, the union-grid reference, errors, step sync, JSON."""
from __future__ import annotations

import math

import pytest
import torch

from explorer.core.analytic import GaussianDenoiser
from explorer.core.compare import (
    PALETTE, Comparison, ComparisonResult, absorb, column_error, comparison_events, data_space, difference,
    format_table, index_at_sigma, index_at_step, match_sigma, run_comparison, shared_noise, sigma_axis, solver_color,
)
from explorer.core.config import RunConfig
from explorer.core.sampling import sample
from explorer.core.solvers import SOLVERS


@pytest.fixture(scope="module")
def gauss() -> GaussianDenoiser:
    return GaussianDenoiser((3,), mean=0.2, std=0.5)


def three(base: RunConfig) -> tuple[RunConfig, ...]:
    return (base.replace(solver="heun", steps=6), base.replace(solver="euler", steps=12),
            base.replace(solver="dpm-solver++2m", steps=8, process="vp"))


def test_three_solvers_from_one_seed_share_identical_latents(gauss):
    cmp = Comparison("gaussian", three(RunConfig(seed=7)), seed=11, batch=5, reference=False)
    result = run_comparison(gauss, cmp)
    runs = result.finished()
    assert len(runs) == 3
    first = runs[0].trajectory
    for run in runs:
        assert run.config.seed == 11 and run.config.batch == 5  # the comparison's seed wins over the column's
        assert torch.equal(run.trajectory.noise, first.noise)
        start = run.trajectory.x[0] / (run.trajectory.sigma[0] * run.trajectory.scale[0])
        assert torch.allclose(start.double(), first.noise.double(), rtol=1e-6, atol=1e-6)
    # and they are the latents a single run with that seed draws
    alone = sample(gauss, RunConfig(seed=11, batch=5, steps=3), record_evals=False)
    assert torch.equal(alone.noise, first.noise)
    assert torch.equal(shared_noise(gauss, 11, 5), first.noise)


def test_reference_passes_through_every_columns_sigma(gauss):
    cmp = Comparison("gaussian", three(RunConfig()), batch=4, reference_rtol=1e-9)
    result = run_comparison(gauss, cmp)
    ref = result.reference.trajectory
    assert ref.x.dtype == torch.float64
    for run, err in zip(result.finished(), result.errors()):
        assert len(err.step) == run.trajectory.x.shape[0]
        assert all(math.isfinite(e) for e in err.step), run.config.solver
        assert err.final == err.step[-1] > 0
        assert err.step[0] < 1e-5  # same start (float32 rounding only)


def test_reference_agrees_with_the_exact_solution(gauss):
    cfg = RunConfig(steps=5, final="sigma_min")
    cmp = Comparison("gaussian", (cfg,), batch=4, reference_rtol=1e-10)
    result = run_comparison(gauss, cmp)
    ref = result.reference.trajectory
    y0 = ref.noise.double() * float(ref.sigma[0])
    for i in range(1, len(ref.sigma)):
        exact = gauss.exact(y0, float(ref.sigma[0]), float(ref.sigma[i]))
        assert torch.allclose(data_space(ref)[i], exact, rtol=0, atol=1e-7)


def test_errors_shrink_with_more_steps_and_difference_is_the_gap(gauss):
    base = RunConfig(final="sigma_min")
    cmp = Comparison("gaussian", (base.replace(steps=4), base.replace(steps=16)), batch=4)
    result = run_comparison(gauss, cmp)
    coarse, fine = (e.final for e in result.errors())
    assert fine < coarse / 8  # Heun is second order: 4× the steps, ~16× smaller error
    d = difference(result.runs[0].trajectory, result.reference.trajectory)
    assert d.shape == (4, 3)
    assert math.isclose(float(d.square().mean().sqrt()), coarse, rel_tol=1e-9)


def test_processes_meet_in_data_space(gauss):
    """An EDM and a VP column on the same σ grid are compared at equal σ in x/s."""
    base = RunConfig(steps=10, final="sigma_min", solver="dpm-solver-3", dtype="float64")
    cmp = Comparison("gaussian", (base, base.replace(process="vp")), batch=3)
    result = run_comparison(gauss, cmp)
    edm, vp = result.finished()
    assert torch.allclose(edm.trajectory.sigma, vp.trajectory.sigma, rtol=1e-9)
    for err in result.errors():
        assert err.final < 1e-3


def test_table_without_reference_and_format(gauss):
    cmp = Comparison("gaussian", three(RunConfig()), batch=2, reference=False)
    result = run_comparison(gauss, cmp)
    rows = result.table()
    assert [r["solver"] for r in rows] == ["heun", "euler", "dpm-solver++2m"]
    assert [r["nfe"] for r in rows] == [11, 12, 8]
    assert all(r["error"] is None for r in rows)
    text = format_table(rows)
    assert "heun" in text and "—" in text


def test_events_stream_every_step_and_can_rerun_one_column(gauss):
    cmp = Comparison("gaussian", three(RunConfig()), batch=2, reference=False)
    result = ComparisonResult(cmp, shared_noise(gauss, 0, 2))
    seen = []
    for item in comparison_events(gauss, cmp, columns=[1]):
        seen.append((item.column, item.event.index if item.event else "done"))
        absorb(result, item)
    assert seen[0] == (1, 0) and seen[-1] == (1, "done") and len(seen) == 12 + 2
    assert result.runs[0] is None and result.runs[1] is not None and not result.complete


def test_json_round_trip_and_validation():
    cmp = Comparison("ring", three(RunConfig(churn=0.0)), seed=3, batch=4, reference_rtol=1e-7)
    again = Comparison.from_json(cmp.to_json())
    assert again == cmp
    edited = cmp.set(0, RunConfig(solver="lms", steps=5)).remove(2).add(RunConfig(solver="ddim"))
    assert [c.solver for c in edited.columns] == ["lms", "euler", "ddim"]
    assert all(c.seed == 3 and c.batch == 4 for c in edited.columns)
    with pytest.raises(ValueError, match="at least one column"):
        Comparison("ring", ())
    with pytest.raises(ValueError, match="Unknown comparison field"):
        Comparison.from_dict({**cmp.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="no column 5"):
        cmp.remove(4)
    with pytest.raises(ValueError, match="not valid JSON"):
        Comparison.from_json("{")
    with pytest.raises(ValueError, match="tolerance"):
        Comparison("ring", (RunConfig(),), reference_rtol=0.5)


def test_step_sync_by_index_and_by_sigma(gauss):
    cmp = Comparison("gaussian", (RunConfig(steps=4), RunConfig(solver="euler", steps=16)), batch=2, reference=False)
    a, b = (r.trajectory for r in run_comparison(gauss, cmp).finished())
    axis = sigma_axis([a, b])
    assert axis == sorted(axis, reverse=True) and axis[0] == pytest.approx(80) and axis[-1] == 0
    assert len(axis) == 17  # the 4-step grid (ρ-fractions k/3) lies on the 16-step one (k/15): 16 + σ = 0
    assert index_at_step(a, 10) == 4 and index_at_step(b, 10) == 10
    for i, s in enumerate(a.sigma.tolist()):
        j = index_at_sigma(b, s)
        assert abs(math.log(max(float(b.sigma[j]), 1e-9)) - math.log(max(s, 1e-9))) <= min(
            abs(math.log(max(float(x), 1e-9)) - math.log(max(s, 1e-9))) for x in b.sigma) + 1e-12
    assert index_at_sigma(b, 0.0) == 16
    assert match_sigma(b.sigma, float(a.sigma[0])) == 0
    assert match_sigma(b.sigma, 1.2345) is None


def test_solver_colors_are_fixed_and_distinct():
    names = [n for n in SOLVERS if n != "reference"][: len(PALETTE)]
    colors = [solver_color(n) for n in names]
    assert len(set(colors)) == len(colors)
    assert solver_color("heun") == solver_color("heun")
    assert solver_color("reference") == "#000000"


def test_column_error_marks_unmatched_sigmas_nan(gauss):
    a = sample(gauss, RunConfig(steps=3, batch=2), record_evals=False)
    b = sample(gauss, RunConfig(steps=4, batch=2), record_evals=False)
    err = column_error(a, b)
    matched = [math.isfinite(e) for e in err.step]
    assert matched[0] and matched[-1] and not all(matched)  # σ_max and 0 are shared, the middle is not


def test_reference_also_visits_the_steps_an_adaptive_column_chose(gauss):
    cmp = Comparison("gaussian", (RunConfig(steps=5), RunConfig(solver="dpm-solver-12", steps=None)), batch=3)
    result = run_comparison(gauss, cmp)
    adaptive = result.runs[1].trajectory
    assert adaptive.num_steps > 3  # more states than the ends its plan knew
    err = result.errors()[1]
    assert all(math.isfinite(e) for e in err.step)
