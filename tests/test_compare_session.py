"""The Qt-free comparison session: edits through Comparison's limits, results prepared once, stale ones refused."""
from __future__ import annotations

import pytest
import torch

from explorer.core.analytic import GaussianDenoiser
from explorer.core.compare import MAX_COLUMNS, Comparison, column_color, comparison_events, reference_events
from explorer.core.config import RunConfig
from explorer.session.comparison import ComparisonSession
from explorer.session.status import RunStatus, starting


def session_with(n: int, shape=(1, 4, 4)) -> ComparisonSession:
    s = ComparisonSession("gauss", shape, (-1.0, 1.0))
    for k in range(n):
        s.add(RunConfig(solver="heun", steps=2 + k, batch=2))
    return s


def run_everything(s: ComparisonSession, den) -> None:
    comparison = s.comparison()
    for item in comparison_events(den, comparison, with_reference=False):
        if item.run is not None:
            assert s.commit(s.prepare_column(item.column, item.run, s.generation))
    for item in reference_events(den, comparison):
        if item.run is not None:
            assert s.commit(s.prepare_reference(item.run, s.prepared, s.generation))


def test_a_seventeenth_column_is_refused_and_nothing_changes():
    s = session_with(MAX_COLUMNS)
    generation = s.generation
    with pytest.raises(ValueError, match="at most 16 columns"):
        s.add(RunConfig(solver="euler", steps=3))
    assert len(s.columns) == MAX_COLUMNS and len(s.prepared) == MAX_COLUMNS and s.generation == generation


def test_results_are_prepared_once_and_lookups_compute_nothing():
    den = GaussianDenoiser((1, 4, 4), std=0.5)
    s = session_with(2)
    run_everything(s, den)
    assert s.reference is not None and all(e is not None for e in s.errors())
    built = s.frames_built
    for k in range(2):
        for i in range(s.prepared[k].run.trajectory.num_steps + 1):
            for view in ("x0", "xt", "diff"):
                assert s.frame(k, i, view) is not None
    assert s.frames_built == built and s.frame_lookups == (3 + 4) * 3


def test_stale_results_are_refused_after_an_edit():
    den = GaussianDenoiser((2,), std=0.5)
    s = session_with(2, shape=(2,))
    comparison, generation = s.comparison(), s.generation
    prepared = [s.prepare_column(i.column, i.run, generation) for i in comparison_events(den, comparison, False) if i.run]
    s.set(1, RunConfig(solver="euler", steps=5, batch=2))
    assert not s.commit(prepared[0]) and s.runs == [None, None]
    s.set_model("other", (2,), (-1.0, 1.0))
    assert len(s.columns) == 2 and s.reference is None


def test_colours_follow_the_column_not_the_solver():
    assert len({column_color(k) for k in range(3)}) == 3
    den = GaussianDenoiser((2,), std=0.5)
    cmp = Comparison("g", tuple(RunConfig(solver="heun", steps=n) for n in (5, 10, 18)), batch=2)
    runs = [i.run for i in comparison_events(den, cmp, False) if i.run is not None]
    assert len({r.color for r in runs}) == 3


def test_run_status_text_and_states():
    status = starting(10, 19).advance(3, 5)
    assert status.running and status.nfe_text() == "NFE 5 / 19"
    assert status.end("cancelled").nfe_text() == "NFE 5"
    with pytest.raises(ValueError, match="state"):
        RunStatus("paused")


def test_interleaved_columns_equal_their_sequential_runs():
    from explorer.core.compare import interleaved_events, share_groups

    den = GaussianDenoiser((2,), std=0.5)
    cmp = Comparison("g", (RunConfig(solver="heun", steps=3), RunConfig(solver="euler", steps=5),
                           RunConfig(solver="heun", steps=2, dtype="float64")), batch=3)
    assert share_groups(cmp.columns, [0, 1, 2]) == [[0, 1], [2]]
    order, runs = [], {}
    for item in interleaved_events(den, cmp):
        order.append(item.column)
        if item.run is not None:
            runs[item.column] = item.run
    assert order[:4] == [0, 1, 0, 1]  # one step of each column in turn
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()  # no mode leaks out of the runs
    sequential = {i.column: i.run for i in comparison_events(den, cmp, with_reference=False) if i.run is not None}
    for k in range(3):
        assert torch.equal(runs[k].trajectory.x, sequential[k].trajectory.x) and runs[k].color == sequential[k].color
