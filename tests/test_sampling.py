"""The sampling API: events, determinism, latents, NaN detection, trajectory files."""
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from explorer import RunConfig, Trajectory, sample, sample_steps, toy
from explorer.core.analytic import GaussianDenoiser
from explorer.core.denoiser import Denoiser
from explorer.core.latents import load_noise
from explorer.core.sampling import NonFiniteError

RING = toy("ring")


def test_events_stream_every_step():
    cfg = RunConfig(solver="dpm-solver-2", steps=5, batch=3)
    events = list(sample_steps(RING, cfg))
    assert [e.index for e in events] == list(range(6))
    assert events[0].denoised is None and events[0].noise.shape == (3, 2)
    assert all(e.denoised.shape == (3, 2) for e in events[1:])
    assert events[-1].sigma == 0 and events[-1].nfe == 9
    assert sum(len(e.eval_sigma) for e in events) == 9
    assert all(len(e.eval_x) == len(e.eval_sigma) for e in events)


def test_same_seed_same_trajectory_bit_for_bit():
    cfg = RunConfig(solver="heun", steps=8, batch=4, seed=7, churn=5.0)
    a, b = sample(RING, cfg), sample(RING, cfg)
    assert torch.equal(a.x, b.x) and torch.equal(a.denoised, b.denoised)


# Options that make each solver draw noise during the run (Restart: the jumps of two intervals).
NOISY = {"heun": {"churn": 3.0}, "euler-ancestral": {}, "dpm-solver++2m-sde": {},
         "restart": {"restart_intervals": "0.3:2:2:2,1.5:10:1:1"}}


@pytest.mark.parametrize("solver", list(NOISY))
def test_sample_k_independent_of_batch_size(solver):
    one = sample(RING, RunConfig(solver=solver, steps=6, batch=1, seed=10, options=NOISY[solver]))
    eight = sample(RING, RunConfig(solver=solver, steps=6, batch=8, seed=3, options=NOISY[solver]))
    # sample 7 of the batch started at seed 3 is seed 10
    assert torch.equal(one.x[:, 0], eight.x[:, 7])


def test_cancel_by_closing_the_generator():
    gen = sample_steps(RING, RunConfig(steps=50, batch=2))
    seen = [next(gen) for _ in range(3)]
    gen.close()
    assert seen[-1].index == 2
    with pytest.raises(StopIteration):
        next(gen)


class Exploding(Denoiser):
    """A denoiser that returns NaN below σ = 1."""

    shape = (2,)

    def forward(self, x, sigma, labels=None):
        bad = torch.as_tensor(sigma).reshape(-1, 1) < 1
        return torch.where(bad, torch.full_like(x, math.nan), x * 0)


def test_nan_stops_the_run_naming_step_and_sigma():
    with pytest.raises(NonFiniteError, match=r"step \d+ \(σ = "):
        sample(Exploding(), RunConfig(solver="euler", steps=10, batch=2))


def test_float64_runs_are_float64_everywhere():
    traj = sample(RING, RunConfig(steps=4, dtype="float64", batch=2))
    assert traj.x.dtype == traj.denoised.dtype == traj.t.dtype == torch.float64


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_trajectory_round_trip(tmp_path, suffix):
    traj = sample(RING, RunConfig(solver="dpm-solver-3", steps=4, batch=3, dtype="float64"))
    path = traj.save(tmp_path / f"run{suffix}")
    back = Trajectory.load(path)
    assert back.config == traj.config and back.nfe == traj.nfe and back.denoiser_id == traj.denoiser_id
    for name, tensor in traj.tensors().items():
        assert torch.equal(back.tensors()[name], tensor), name
    assert back.x.shape == (5, 3, 2) and back.denoised.shape == (4, 3, 2) and back.eval_x.shape[0] == back.nfe
    assert [p.name for p in tmp_path.iterdir()] == [f"run{suffix}"]  # no temp files left


def test_trajectory_load_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError):
        Trajectory.load(bad)
    other = tmp_path / "other.safetensors"
    save_file({"a": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not an explorer trajectory"):
        Trajectory.load(other)


def test_noise_files(tmp_path):
    noise = torch.randn(5, 2, dtype=torch.float64)
    np.save(tmp_path / "n.npy", noise.numpy())
    save_file({"noise": noise}, str(tmp_path / "n.safetensors"))
    for name in ("n.npy", "n.safetensors"):
        loaded = load_noise(tmp_path / name, (2,))
        assert torch.equal(loaded, noise)
        traj = sample(RING, RunConfig(steps=3), noise=loaded)
        assert torch.equal(traj.noise, noise.float())
    save_file({"other": noise}, str(tmp_path / "k.safetensors"))
    with pytest.raises(ValueError, match="no tensor named 'noise'"):
        load_noise(tmp_path / "k.safetensors", (2,))
    with pytest.raises(ValueError, match="shape"):
        load_noise(tmp_path / "n.npy", (3,))
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Could not read"):
        load_noise(tmp_path / "junk.npy", (2,))


def test_exact_gaussian_final_sample_is_the_exact_denoised_point():
    """With final=zero the last step lands on D at σ_min (SPEC §2): check against the exact ODE."""
    g = GaussianDenoiser((2,), mean=0.1, std=0.4)
    traj = sample(g, RunConfig(solver="reference", steps=2, rtol=1e-10))
    y0 = traj.x[0] / traj.scale[0]
    at_min = g.exact(y0, float(traj.sigma[0]), float(traj.sigma[-2]))
    expected = g(at_min, torch.tensor(float(traj.sigma[-2]), dtype=torch.float64))
    assert torch.allclose(traj.samples, expected, atol=1e-7)
