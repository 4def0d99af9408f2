"""Whole-step graphs: which runs qualify, and the capture/replay logic, on the CPU through the op tape.

On a GPU the same code captures CUDA graphs; here :class:`explorer.core.fast.OpTape` stands in
for them with the same fixed-address semantics (it keeps every tensor a step made, bakes in
Python numbers, refuses host reads), so a replay that forgot an input or reused a buffer wrongly
gives a wrong answer here too.
"""
from __future__ import annotations

import types
import warnings

import pytest
import torch

from explorer.core import fast as F
from explorer.core.config import RunConfig
from explorer.core.sampling import sample_steps
from explorer.core.solvers import get_solver
from tests.test_fast import _network


@pytest.fixture
def tapes(monkeypatch):
    monkeypatch.setattr(F, "STEP_TAPES_ON_CPU", True)
    F.release_graphs()
    yield
    F.release_graphs()


def _events(den, cfg, **kw):
    return list(sample_steps(den, cfg, record_evals=True, **kw))


def _same(a, b):
    assert [e.index for e in a] == [e.index for e in b]
    assert [e.nfe for e in a] == [e.nfe for e in b]
    assert [e.eval_sigma for e in a] == [e.eval_sigma for e in b]
    assert [e.order for e in a] == [e.order for e in b]
    for x, y in zip(a, b):
        assert torch.equal(x.x, y.x)
        assert (x.denoised is None) == (y.denoised is None)
        if x.denoised is not None:
            assert torch.equal(x.denoised, y.denoised)
        assert len(x.eval_x) == len(y.eval_x) and all(torch.equal(p, q) for p, q in zip(x.eval_x, y.eval_x))


@pytest.mark.parametrize("solver,steps,final,to_host", [("heun", 3, "zero", True), ("euler", 2, "denoise", False),
                                                        ("dpm-solver++2m", 4, "zero", True),
                                                        ("dpm-solver-3", 2, "sigma_min", False),
                                                        ("heun", 2, "zero", False)])
def test_replayed_runs_equal_eager_runs_and_keep_earlier_events(tapes, solver, steps, final, to_host):
    den = _network()
    cfg = RunConfig(solver=solver, steps=steps, batch=2, device="cpu", final=final)
    runs = [_events(den, cfg.replace(seed=seed), to_host=to_host) for seed in (1, 2, 3)]  # eager, capture, replay
    graphs = [v for v in F._RUNS.values() if isinstance(v, F.StepGraphs)]
    assert len(graphs) == 1 and len(graphs[0].steps) == len(runs[0]) - 1
    eager = [_events(den, cfg.replace(seed=seed, fast=False)) for seed in (1, 2, 3)]
    for got, want in zip(runs, eager):  # checked after all runs: a later replay must not rewrite earlier events
        _same(got, want)
    assert not torch.equal(runs[1][-1].x, runs[2][-1].x)


def test_the_rule_follows_what_solvers_declare():
    plain = RunConfig()
    assert F.step_graphs_apply(get_solver("heun"), plain)
    assert F.step_graphs_apply(get_solver("dpm-solver++2m"), plain)
    assert not F.step_graphs_apply(get_solver("heun"), plain.replace(churn=1.0))
    for name in ("euler-ancestral", "dpm-solver-12", "reference", "dpm-solver++2m-sde"):
        assert not F.step_graphs_apply(get_solver(name), plain), name
    declared = types.SimpleNamespace(fixed_step_ops=True, stochastic=True, adaptive=False, family="multistep")
    assert F.step_graphs_apply(declared, plain)
    assert not F.step_graphs_apply(types.SimpleNamespace(fixed_step_ops=False), plain)


def test_the_tape_refuses_host_reads_and_noise():
    x = torch.ones(3)
    for region in (lambda: (x * 2).sum().item(), lambda: torch.randn(3), lambda: torch.randn_like(x)):
        with pytest.raises(RuntimeError, match="captured step"):
            F._TapeBackend().capture(region)


def test_the_tape_replays_on_the_recorded_inputs():
    x = torch.ones(3)
    replay, out = F._TapeBackend().capture(lambda: (x * 2).add_(1).exp())
    x.fill_(2.0)
    replay()
    assert torch.allclose(out, torch.full((3,), 5.0).exp())


class _NoisyNet(torch.nn.Module):
    """A network that draws noise each call (a replay would repeat the same draw: cannot be captured)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, c_noise, labels=None):
        return self.inner(x + 0.0 * torch.randn_like(x), c_noise, labels)


def test_a_run_that_cannot_be_captured_stays_eager_with_a_warning(tapes):
    den = _network()
    den.model = _NoisyNet(den.model)
    cfg = RunConfig(solver="heun", steps=2, batch=2, device="cpu")
    first = _events(den, cfg)
    with pytest.warns(RuntimeWarning, match="Whole-step capture"):
        second = _events(den, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = _events(den, cfg)
    _same(first, second)
    _same(first, third)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("solver,steps", [("heun", 4), ("dpm-solver++2m", 5), ("dpm-solver-3", 2)])
@pytest.mark.parametrize("to_host", [True, False])
def test_cuda_whole_step_graphs_replay_the_eager_run(solver, steps, to_host):
    F.release_graphs()
    den = _network().cuda()
    cfg = RunConfig(solver=solver, steps=steps, batch=3, device="cuda")
    runs = [_events(den, cfg.replace(seed=seed), to_host=to_host) for seed in (1, 2, 3)]
    assert any(isinstance(v, F.StepGraphs) and v.steps for v in F._RUNS.values())
    eager = [_events(den, cfg.replace(seed=seed, fast=False)) for seed in (1, 2, 3)]
    for got, want in zip(runs, eager):
        assert [e.nfe for e in got] == [e.nfe for e in want]
        for a, b in zip(got, want):
            rel = float((a.x.cpu().double() - b.x.cpu().double()).norm() / b.x.cpu().double().norm().clamp_min(1e-30))
            assert rel <= 1e-5
    F.release_graphs()
