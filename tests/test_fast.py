"""The CUDA fast path: skipped cleanly on the CPU (same results as before), graph-replayed D on a GPU."""
from __future__ import annotations

import gc

import pytest
import torch

from explorer.core.config import RunConfig
from explorer.core.fast import (
    _CACHE, FastOptions, GraphedDenoiser, NetworkCast, fast_denoiser, graphs_available, network_variant, release_graphs,
)
from explorer.core.sampling import sample_steps
from explorer.models.networks import build_denoiser

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
ARCH = {"class": "SongUNet", "img_resolution": 8, "in_channels": 3, "out_channels": 3, "model_channels": 16,
        "channel_mult": [1, 2], "num_blocks": 1, "attn_resolutions": [4], "dropout": 0.0}


def _network(seed: int = 0, label_dim: int = 0):
    den = build_denoiser("edm", {**ARCH, "label_dim": label_dim}, {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in den.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return den.eval().requires_grad_(False)


def _final(den, cfg, **kw):
    last = None
    for last in sample_steps(den, cfg, **kw):
        pass
    return (last.x / last.scale).cpu()


def test_no_graphs_on_the_cpu():
    assert not graphs_available("cpu")
    assert not graphs_available(torch.device("cpu"))


def test_options_are_checked():
    with pytest.raises(ValueError, match="precision"):
        FastOptions(precision="float16")
    with pytest.raises(ValueError, match="warm-up"):
        FastOptions(warmup=0)
    with pytest.raises(ValueError, match="fast must be"):
        RunConfig(fast="yes")
    assert RunConfig.from_json(RunConfig(fast=False).to_json()).fast is False


@pytest.mark.parametrize("solver", ["heun", "dpm-solver++2m", "dpm-solver-3"])
def test_cpu_runs_are_the_eager_runs_whatever_the_switch(solver):
    den = _network()
    cfg = RunConfig(solver=solver, steps=4, batch=3, seed=5, device="cpu")
    release_graphs()
    before = set(_CACHE)  # earlier tests' models may still be alive
    fast = _final(den, cfg, fast=FastOptions(precision="bfloat16", channels_last=True))
    plain = _final(den, cfg.replace(fast=False))
    assert torch.equal(fast, plain)
    assert set(_CACHE) == before  # nothing was wrapped on the CPU


def test_graphed_denoiser_calls_the_denoiser_on_cpu_tensors():
    den = _network()
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.3, 7.0])
    wrapper = GraphedDenoiser(den)
    with torch.inference_mode():
        assert torch.equal(wrapper(x, sigma), den(x, sigma))
    assert wrapper.captured == 0
    assert (wrapper.shape, wrapper.sigma_min, wrapper.sigma_max) == (den.shape, den.sigma_min, den.sigma_max)


def test_bf16_variant_casts_only_the_network_and_leaves_the_model_alone():
    den = _network()
    before = {k: v.clone() for k, v in den.state_dict().items()}
    variant = network_variant(den, FastOptions(precision="bfloat16", channels_last=True))
    assert variant is not den and isinstance(variant.model, NetworkCast) and den.model is not variant.model
    assert network_variant(den, FastOptions()) is den
    x, sigma = torch.randn(2, 3, 8, 8), torch.tensor([0.05, 20.0])
    with torch.inference_mode():
        ref, out = den(x, sigma), variant(x, sigma)
    assert out.dtype == torch.float32 and out.is_contiguous()
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 3e-2  # bf16 network, float32 preconditioning: small but not zero
    assert all(torch.equal(v, den.state_dict()[k]) for k, v in before.items())
    assert all(p.is_contiguous() for p in den.parameters())


def test_wrappers_are_cached_refreshed_and_forgotten():
    den = _network()
    opts = FastOptions(precision="bfloat16", channels_last=True)
    first = fast_denoiser(den, opts)
    assert fast_denoiser(den, opts) is first and fast_denoiser(first, opts) is first
    copy_before = first._variant()
    assert fast_denoiser(den, opts)._variant() is copy_before  # unchanged weights: nothing redone
    with torch.no_grad():
        next(den.parameters()).mul_(1.5)  # an in-place update (an EMA step) makes the copy stale
    assert fast_denoiser(den, opts)._variant() is not copy_before
    key = (id(den), opts)
    assert key in _CACHE
    del den, first, copy_before
    gc.collect()
    assert key not in _CACHE


def test_a_model_loaded_under_inference_mode_runs_fast():
    """FD sweeps load and sample inside ``torch.inference_mode``: weights without version counters."""
    with torch.inference_mode():
        den = _network()
        opts = FastOptions(precision="bfloat16")
        first = fast_denoiser(den, opts)
        assert fast_denoiser(den, opts) is first
        cfg = RunConfig(solver="euler", steps=2, batch=1, fast=True)
        assert torch.isfinite(_final(den, cfg, fast=opts)).all()


# ------------------------------------------------------------------------------ on a GPU

@cuda
def test_graph_replay_equals_the_eager_call_and_one_graph_per_batch():
    den = _network().cuda()
    release_graphs()
    wrapper = fast_denoiser(den)
    with torch.inference_mode():
        for batch in (1, 5, 5, 1):
            x = torch.randn(batch, 3, 8, 8, device="cuda")
            sigma = torch.rand(batch, device="cuda") * 10 + 0.01
            out = wrapper(x, sigma)
            assert torch.allclose(out, den(x, sigma), rtol=1e-6, atol=1e-6)
            out2 = wrapper(x * 0.5, sigma)  # a fresh output tensor each call
            assert not torch.equal(out, out2)
    assert wrapper.captured == 2


@cuda
@pytest.mark.parametrize("solver,steps", [("heun", 18), ("dpm-solver++2m", 10)])
def test_fast_float32_runs_agree_with_eager_runs(solver, steps):
    den = _network().cuda()
    cfg = RunConfig(solver=solver, steps=steps, batch=8, seed=1, device="cuda")
    fast, eager = _final(den, cfg), _final(den, cfg.replace(fast=False))
    assert float((fast - eager).norm() / eager.norm()) < 1e-5
    bf16 = _final(den, cfg, fast=FastOptions(precision="bfloat16", channels_last=True))
    assert float((bf16 - eager).norm() / eager.norm()) < 5e-2


@cuda
def test_class_labels_reach_the_graph():
    den = _network(label_dim=3).cuda()
    cfg = RunConfig(solver="euler", steps=4, batch=2, device="cuda")
    a, b = _final(den, cfg.replace(label=0)), _final(den, cfg.replace(label=2))
    assert not torch.equal(a, b)
    assert torch.allclose(b, _final(den, cfg.replace(label=2, fast=False)), rtol=1e-5, atol=1e-5)
