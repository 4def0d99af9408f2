"""Streaming states to the host (side stream, pinned buffers) and recording them within a memory budget."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from explorer.core.analytic import GaussianDenoiser, toy
from explorer.core.config import RunConfig
from explorer.core.sampling import NonFiniteError, make_plan, sample_steps
from explorer.core.streaming import HostCopy, HostStreamer, in_order
from explorer.core.trajectory import Trajectory, TrajectoryRecorder

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _events(denoiser, config, **kw):
    return [(e.index, e.x.clone(), None if e.denoised is None else e.denoised.clone(), [x.clone() for x in e.eval_x])
            for e in sample_steps(denoiser, config, **kw)]


def test_cpu_copies_are_the_tensors_and_ready_at_once():
    t = torch.randn(3, 2)
    copy = HostStreamer("cpu").submit([t, None])
    assert copy.ready()
    out = copy.wait()
    assert out[1] is None and torch.equal(out[0], t)


class _Late(HostCopy):
    """A copy that is never ready by itself: only waiting completes it (a busy GPU)."""

    def ready(self) -> bool:
        return False


def _counted(n: int, produced: list):
    """0 … n−1, noting in ``produced`` how far the producer has got."""
    for i in range(n):
        produced.append(i)
        yield i


def test_in_order_hands_out_in_order_at_most_depth_behind():
    produced: list = []
    seen = []
    for item, tensors in in_order(_counted(6, produced), lambda i: _Late([torch.tensor(i)]), depth=2):
        seen.append((item, len(produced)))
        assert int(tensors[0]) == item
    assert [i for i, _ in seen] == list(range(6))
    # item k is handed out once k + depth + 1 items exist (or at the end): the producer runs ahead by `depth`
    assert [n for _, n in seen] == [3, 4, 5, 6, 6, 6]


def test_in_order_hands_out_ready_copies_at_once():
    produced: list = []
    seen = [len(produced) for _, _ in in_order(_counted(4, produced), lambda i: HostCopy([None]), depth=3)]
    assert seen == [1, 2, 3, 4]


def test_in_order_rejects_a_negative_depth():
    with pytest.raises(ValueError, match="depth"):
        list(in_order(iter([1]), lambda i: HostCopy([]), depth=-1))


@pytest.mark.parametrize("solver,extra", [
    ("heun", {}), ("dpm-solver++2m", {}), ("dpm-solver-3", {}), ("euler-ancestral", {}),
    ("heun", {"churn": 10.0}), ("dpm-solver++2m", {"final": "denoise"}),
])
def test_streaming_path_gives_the_same_events_as_the_plain_loop_on_cpu(solver, extra):
    den = toy("ring")
    cfg = RunConfig(solver=solver, steps=6, batch=5, seed=3, device="cpu", **extra)
    plain = _events(den, cfg.replace(fast=False))
    streamed = _events(den, cfg, to_host=True, lookahead=3)
    assert len(plain) == len(streamed)
    for a, b in zip(plain, streamed):
        assert a[0] == b[0] and torch.equal(a[1], b[1])
        assert (a[2] is None) == (b[2] is None) and (a[2] is None or torch.equal(a[2], b[2]))
        assert len(a[3]) == len(b[3]) and all(torch.equal(p, q) for p, q in zip(a[3], b[3]))


class _Exploding(GaussianDenoiser):
    """Finite until σ falls below 1, then NaN."""

    def forward(self, x, sigma, labels=None):
        out = super().forward(x, sigma, labels)
        return out * torch.where(torch.as_tensor(sigma).reshape(-1, 1) < 1, float("nan"), 1.0)


@pytest.mark.parametrize("fast", [True, False])
def test_first_non_finite_state_is_named_on_both_paths(fast):
    den = _Exploding((2,), mean=0.0, std=0.5)
    cfg = RunConfig(solver="euler", steps=10, batch=2, device="cpu", fast=fast)
    plan = make_plan(den, cfg)
    first_bad = next(i for i, t in enumerate(plan.t) if plan.process.sigma(t) < 1)  # D first NaN there
    seen = []
    with pytest.raises(NonFiniteError, match=f"step {first_bad + 1} ") as err:
        for event in sample_steps(den, cfg):
            seen.append(event.index)
    assert seen == list(range(first_bad + 1))
    assert f"σ = {plan.process.sigma(plan.t[first_bad + 1]):.6g}" in str(err.value)


# ------------------------------------------------------------------------------ recording

def _record(cfg, den, **kw):
    recorder = TrajectoryRecorder(cfg, "test", **kw)
    for event in sample_steps(den, cfg, record_evals=kw.get("record_evals", True)):
        recorder.add(event)
    return recorder, recorder.finish()


def test_default_recording_is_unchanged_and_half_storage_halves_it():
    den = GaussianDenoiser((3, 4, 4), mean=0.1, std=0.6)
    cfg = RunConfig(solver="heun", steps=5, batch=3, device="cpu")
    _, full = _record(cfg, den)
    assert full.x.dtype == torch.float32 and full.x.shape == (6, 3, 3, 4, 4)
    assert full.denoised.shape == (5, 3, 3, 4, 4) and full.eval_x.shape == (9, 3, 3, 4, 4)
    _, half = _record(cfg, den, storage_dtype=torch.float16)
    assert half.x.dtype == torch.float16 and half.t.dtype == torch.float32
    assert torch.allclose(half.x.float(), full.x, rtol=1e-3, atol=1e-3)
    assert torch.equal(half.sigma, full.sigma)


def test_recording_a_subset_of_samples_and_steps(tmp_path):
    den = GaussianDenoiser((2,), mean=0.0, std=0.5)
    cfg = RunConfig(solver="heun", steps=8, batch=6, device="cpu")
    _, full = _record(cfg, den)
    _, part = _record(cfg, den, samples=[4, 1], steps=[2, 5])
    assert part.extra == {"recorded_steps": [0, 2, 5, 8], "recorded_samples": [1, 4]}
    assert torch.equal(part.x, full.x[[0, 2, 5, 8]][:, [1, 4]])
    assert torch.equal(part.denoised, full.denoised[[1, 4, 7]][:, [1, 4]])
    assert torch.equal(part.noise, full.noise[[1, 4]])
    assert part.eval_x.shape[0] == len(part.eval_sigma) == 5  # the evaluations of steps 2, 5 and 8 (2 + 2 + 1)
    path = part.save(tmp_path / "part.safetensors")
    assert torch.equal(Trajectory.load(path).x, part.x)


def test_adaptive_runs_keep_their_last_state_when_recording_a_subset():
    den = GaussianDenoiser((2,), mean=0.0, std=0.5)
    cfg = RunConfig(solver="dpm-solver-23", steps=None, batch=2, device="cpu")
    _, full = _record(cfg, den)
    _, part = _record(cfg, den, steps=[1])
    assert torch.equal(part.x[-1], full.x[-1]) and part.extra["recorded_steps"][-1] == full.num_steps


def test_bad_subsets_are_refused():
    cfg = RunConfig(batch=4, device="cpu")
    with pytest.raises(ValueError, match="sample 4"):
        TrajectoryRecorder(cfg, "x", samples=[0, 4])
    with pytest.raises(ValueError, match="step -1"):
        TrajectoryRecorder(cfg, "x", steps=[-1])


@pytest.mark.parametrize("solver,steps,kw", [
    ("heun", 12, {}), ("heun", 12, {"storage_dtype": torch.float16}), ("dpm-solver++2m", 10, {"record_evals": False}),
    ("dpm-solver-3", 9, {"storage_dtype": torch.float16}), ("heun", 12, {"samples": [0, 3], "steps": [3, 6, 9]}),
])
def test_memory_estimate_matches_what_is_allocated(solver, steps, kw):
    den = GaussianDenoiser((3, 8, 8), mean=0.0, std=0.5)
    cfg = RunConfig(solver=solver, steps=steps, batch=16, device="cpu")
    plan = make_plan(den, cfg)
    recorder, traj = _record(cfg, den, **kw)
    estimate = recorder.estimate_bytes(den.shape, cfg.batch, plan.n_steps, plan.nfe)
    held = sum(t.nelement() * t.element_size() for t in traj.tensors().values())
    assert abs(recorder.allocated_bytes - estimate) <= 0.1 * estimate
    assert abs(held - estimate) <= 0.1 * estimate


def test_recording_1024_rgb_images_over_35_steps_stays_under_1_gb():
    """Heun, 35 steps, 1024 samples of 3×32×32 in float16: peak host memory of the whole run, in a fresh process."""
    script = textwrap.dedent("""
        import json, sys, torch
        from explorer.core import benchmark as B
        from explorer.core.analytic import GaussianDenoiser
        from explorer.core.config import RunConfig
        from explorer.core.sampling import make_plan, sample_steps
        from explorer.core.trajectory import TrajectoryRecorder
        den = GaussianDenoiser((3, 32, 32), mean=0.0, std=0.5)
        cfg = RunConfig(solver="heun", steps=35, batch=1024, device="cpu")
        plan = make_plan(den, cfg)
        recorder = TrajectoryRecorder(cfg, "mem", record_evals=False, storage_dtype=torch.float16)
        estimate = recorder.estimate_bytes(den.shape, 1024, plan.n_steps, plan.nfe)
        before = B.rss_bytes(); B.reset_peak_rss()
        for event in sample_steps(den, cfg, record_evals=False, plan=plan):
            recorder.add(event)
        traj = recorder.finish()
        print(json.dumps({"estimate": estimate, "peak": B.peak_rss_bytes() - before,
                          "held": B.rss_bytes() - before, "allocated": recorder.allocated_bytes}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    numbers = json.loads(out.stdout.strip().splitlines()[-1])
    assert numbers["peak"] < 1e9, numbers
    assert abs(numbers["allocated"] - numbers["estimate"]) <= 0.1 * numbers["estimate"]
    assert numbers["held"] >= 0.9 * numbers["estimate"], numbers  # resident, not just reserved (RSS also keeps freed heap)


# ------------------------------------------------------------------------------ on a GPU

@cuda
def test_streamed_events_arrive_on_the_host_equal_to_device_events():
    den = GaussianDenoiser((3, 8, 8), mean=0.0, std=0.5)
    cfg = RunConfig(solver="heun", steps=6, batch=4, device="cuda")
    device_events = _events(den, cfg, to_host=False)
    host_events = list(sample_steps(den, cfg))
    assert all(e.x.device.type == "cpu" and not e.x.is_pinned() for e in host_events)
    for (index, x, d, evals), event in zip(device_events, host_events):
        assert index == event.index and torch.equal(x.cpu(), event.x)
        assert d is None or torch.equal(d.cpu(), event.denoised)
        assert all(torch.equal(a.cpu(), b) for a, b in zip(evals, event.eval_x))


@cuda
def test_host_copies_wait_only_for_their_own_stream_point():
    streamer = HostStreamer("cuda")
    x = torch.randn(1 << 20, device="cuda")
    copy = streamer.submit([x * 2])
    y = x
    for _ in range(50):  # more queued work after the submit does not delay the copy's values
        y = y * 1.0001
    assert torch.equal(copy.wait()[0], (x * 2).cpu())


@cuda
def test_pinned_staging_stays_at_a_few_steps_worth():
    streamer = HostStreamer("cuda")
    x = torch.randn(64, 1024, device="cuda")
    step_bytes = 2 * x.nelement() * x.element_size()
    kept = [tensors for _, tensors in in_order(iter(range(40)), lambda i: streamer.submit([x * i, x + i]), depth=2)]
    assert all(torch.equal(t[0], (x * i).cpu()) and torch.equal(t[1], (x + i).cpu()) for i, t in enumerate(kept))
    assert streamer.pool.allocated_bytes <= 4 * step_bytes  # depth + 1 in flight, plus one being handed out
