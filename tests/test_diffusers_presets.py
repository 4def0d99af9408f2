"""``--preset diffusers`` runs equal diffusers' own scheduler loops (float64, same latents, same NFE)."""
from __future__ import annotations

import copy
import functools
import sys

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
# diffusers' KDPM2 converts its midpoints with numpy functions on torch tensors, which numpy ≥ 2
# answers with one DeprecationWarning (__array_wrap__) per call.
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")

from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.sampling import sample_steps  # noqa: E402
from explorer.core.schedulers import apply_preset  # noqa: E402
from explorer.models.diffusers_import import load_diffusers_folder  # noqa: E402

TINY = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8,), down_block_types=("DownBlock2D",),
            up_block_types=("UpBlock2D",), layers_per_block=1, norm_num_groups=4)
MODELS = {  # the two tiny models of the issue: ε on a linear β table, v on the cosine one
    "eps-linear": dict(prediction_type="epsilon", beta_schedule="linear"),
    "v-cosine": dict(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"),
}
SCHEDULERS = ["DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "HeunDiscreteScheduler",
              "LMSDiscreteScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler", "PNDMScheduler",
              "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler"]
KARRAS = {"DPMSolverMultistepScheduler", "EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
          "UniPCMultistepScheduler", "DEISMultistepScheduler", "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler"}
EXTRA = {"DDIMScheduler": {"clip_sample": False}, "PNDMScheduler": {"skip_prk_steps": True},
         "DPMSolverSinglestepScheduler": {"solver_order": 3}}  # its blocks of 3, 2 and 1 grid intervals
STEPS = (10, 12, 20)
VARIANTS = {  # further configs of one scheduler: case name → (class, its config beyond the model's)
    "PNDMScheduler-trailing": ("PNDMScheduler", {"skip_prk_steps": True, "timestep_spacing": "trailing"}),
    "PNDMScheduler-prk": ("PNDMScheduler", {"skip_prk_steps": False}),
    "PNDMScheduler-prk-trailing": ("PNDMScheduler", {"skip_prk_steps": False, "timestep_spacing": "trailing"}),
    # x̂₀ clipped to ±0.5 (every early step clips on these untrained networks), ε̂ kept unclipped
    "DDIMScheduler-clip": ("DDIMScheduler", {"clip_sample": True, "clip_sample_range": 0.5}),
    # the φ₂ form of the second-order steps (all of 2M's, 3M's warm-up and lower-order end)
    "DPMSolverMultistepScheduler-heun": ("DPMSolverMultistepScheduler", {"solver_type": "heun"}),
    "DPMSolverMultistepScheduler-heun3": ("DPMSolverMultistepScheduler", {"solver_type": "heun", "solver_order": 3}),
}
VARIANT_STEPS = (10, 20)  # ⌊T/N⌋ even (100, 50): the Runge–Kutta midpoints are consistent (odd is refused)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    return build_models(tmp_path_factory.mktemp)


def build_models(mktemp) -> dict:
    """The two tiny models, saved and reopened through the diffusers folder loader."""
    out = {}
    for i, (key, sched) in enumerate(MODELS.items()):
        folder = mktemp(key)
        torch.manual_seed(i)
        unet = diffusers.UNet2DModel(**TINY)
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        unet.save_pretrained(folder)
        diffusers.DDIMScheduler(clip_sample=False, **sched).save_config(folder)
        den = load_diffusers_folder(folder).to(torch.float64)
        out[key] = (den, unet.to(torch.float64).eval(), sched)
    return out


def scheduler(name: str, sched: dict, karras: bool, **config):
    """A fresh scheduler (a copy of one built once: KDPM2's constructor alone takes about a
    second, converting all 1000 training timesteps' midpoints one by one)."""
    cls_name, extra = VARIANTS.get(name, (name, EXTRA.get(name, {})))
    extra = dict(extra, **config)
    if karras:
        extra["use_karras_sigmas"] = True
    return copy.deepcopy(_built(cls_name, tuple(sorted({**sched, **extra}.items()))))


@functools.lru_cache(maxsize=None)
def _built(name: str, config: tuple):
    return getattr(diffusers, name)(**dict(config))


def to_float64(s) -> None:
    """The diffusers loop in float64: its float32 tables widened (values unchanged), so its
    arithmetic runs in float64 as ours does."""
    for key, value in vars(s).items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and key != "timesteps":
            setattr(s, key, value.to(torch.float64))
    if hasattr(s, "final_alpha_cumprod"):
        s.final_alpha_cumprod = torch.as_tensor(s.final_alpha_cumprod, dtype=torch.float64)


class Float64Torch:
    """``torch`` as a scheduler module sees it, with ``float32`` meaning float64.

    Euler's and DPMSolverMultistep's ``step`` cast the state to float32 ("upcast", meant for
    fp16), which in a float64 run rounds it to float32 every step; with this stand-in the
    loop stays in float64 and the comparison is of the formulas, not of that rounding.
    """

    def __getattr__(self, name: str):
        return torch.float64 if name == "float32" else getattr(torch, name)


def diffusers_loop(unet, s, latents: torch.Tensor, steps: int, monkeypatch=None) -> tuple[torch.Tensor, int]:
    if monkeypatch is not None:
        monkeypatch.setattr(sys.modules[type(s).__module__], "torch", Float64Torch())
    s.set_timesteps(steps)
    if hasattr(s, "set_begin_index"):  # a repeated first timestep (cosine Karras) would else start at index 1
        s.set_begin_index(0)
    to_float64(s)
    x = latents * s.init_noise_sigma
    nfe = 0
    with torch.no_grad():
        for t in s.timesteps:
            out = unet(s.scale_model_input(x, t), t).sample
            nfe += 1
            x = s.step(out, t, x).prev_sample
    return x, nfe


def explorer_run(den, s, latents: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    base = RunConfig(dtype="float64", device="cpu", fast=False, batch=latents.shape[0])
    config, _ = apply_preset("diffusers", {**s.config, "_class_name": type(s).__name__}, steps, base)
    last = None
    for last in sample_steps(den, config, noise=latents, record_evals=False):
        pass
    return last.x, last.nfe


REFUSED = {  # what the tiny-model table leaves out, and why (the messages are tested below)
    "PNDMScheduler (skip_prk_steps=false, ⌊T/N⌋ odd, e.g. N = 12)": "two different Runge–Kutta midpoints per step",
    "PNDMScheduler and DDIMScheduler (linspace)": "steps to t − ⌊T/N⌋, then evaluates at another timestep",
}
CASES = [(m, n, k, steps) for m in MODELS for n in SCHEDULERS for k in (False, True) if not k or n in KARRAS
         for steps in STEPS]
CASES += [(m, n, False, steps) for m in MODELS for n in VARIANTS for steps in VARIANT_STEPS]


@pytest.mark.parametrize("model,name,karras,steps", CASES,
                         ids=[f"{m}-{n.replace('Scheduler', '')}-{'karras' if k else 'default'}-{s}" for m, n, k, s in CASES])
def test_preset_equals_diffusers_loop(models, model, name, karras, steps, monkeypatch):
    den, unet, sched = models[model]
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(steps), dtype=torch.float64)
    ref, ref_nfe = diffusers_loop(unet, scheduler(name, sched, karras), latents, steps, monkeypatch)
    ours, nfe = explorer_run(den, scheduler(name, sched, karras), latents, steps)
    rel = float((ours - ref).norm() / ref.norm())
    assert nfe == ref_nfe - zero_length_steps(name, karras)
    assert rel < 1e-10, rel


def zero_length_steps(name: str, karras: bool) -> int:
    """Evaluations diffusers spends on steps that do not move, which the explorer's strictly
    decreasing grids leave out (its run stops one evaluation earlier, same final state):
    DEIS on a Karras grid repeats σ_min as its last σ (``np.concatenate([sigmas, sigmas[-1:]])``);
    PNDM with set_alpha_to_one=false (its default), steps_offset=0 and leading spacing ends with
    a step from t = 0 to ᾱ_0, i.e. from σ(t=0) to itself (trailing ends at t = T/N − 1)."""
    return int((name == "DEISMultistepScheduler" and karras) or name in ("PNDMScheduler", "PNDMScheduler-prk"))


def test_deis_karras_last_step_is_zero_length(models):
    """The documented gap of ``zero_length_steps``: diffusers' grid, and the preset's note."""
    _, _, sched = models["eps-linear"]
    s = scheduler("DEISMultistepScheduler", sched, True)
    s.set_timesteps(10)
    assert len(s.timesteps) == 10 and float(s.sigmas[-1]) == float(s.sigmas[-2]) > 0
    config, notes = apply_preset("diffusers", {**s.config, "_class_name": "DEISMultistepScheduler"}, 10, RunConfig())
    assert config.steps == 9 and config.sigmas[-1] == pytest.approx(float(s.sigmas[-1]), rel=1e-7)
    assert any("zero length" in n for n in notes)


@pytest.mark.parametrize("offset,alpha_to_one", [(1, False), (0, True)])
def test_pndm_without_zero_length_step_costs_the_same(models, offset, alpha_to_one):
    """PNDM configs whose last step moves (SD's steps_offset=1, or set_alpha_to_one): NFE equal."""
    den, unet, sched = models["eps-linear"]
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    make = lambda: diffusers.PNDMScheduler(**sched, skip_prk_steps=True, steps_offset=offset,  # noqa: E731
                                           set_alpha_to_one=alpha_to_one)
    ref, ref_nfe = diffusers_loop(unet, make(), latents, 10)
    ours, nfe = explorer_run(den, make(), latents, 10)
    assert nfe == ref_nfe == 11
    assert float((ours - ref).norm() / ref.norm()) < 1e-10


def test_pndm_runge_kutta_start_needs_four_steps():
    """With N < 4 diffusers' Runge–Kutta start ends the run (no multistep phase): refused."""
    with pytest.raises(ValueError, match="use 4 or more"):
        apply_preset("diffusers", {"_class_name": "PNDMScheduler"}, 3, RunConfig())
    config, _ = apply_preset("diffusers", {"_class_name": "PNDMScheduler"}, 4, RunConfig())
    assert config.solver == "pndm" and config.options == {"prk_nodes": "grid", "combine": "eps"}
    assert config.timesteps == (750, 625, 500, 375, 250, 125, 0)
    assert config.sigmas[-1] > 0  # PNDM's set_alpha_to_one defaults to false (DDIM's to true)


@pytest.mark.parametrize("extra", [
    dict(solver_order=3, solver_type="heun"),  # a block's second node with the φ₂ term, the taylor end
    dict(solver_order=3, algorithm_type="dpmsolver", final_sigmas_type="sigma_min", lower_order_final=True),
    dict(solver_order=2, algorithm_type="dpmsolver", solver_type="heun", final_sigmas_type="sigma_min"),
], ids=["pp3-heun", "noise3-midpoint", "noise2-heun"])
def test_singlestep_types_and_forms_equal_diffusers_loop(models, extra, monkeypatch):
    """The rest of DPMSolverSinglestep's formulas: heun, noise prediction, order 2, to σ_min."""
    den, unet, sched = models["eps-linear"]
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    make = lambda: diffusers.DPMSolverSinglestepScheduler(**sched, **extra)  # noqa: E731
    ref, ref_nfe = diffusers_loop(unet, make(), latents, 9, monkeypatch)
    ours, nfe = explorer_run(den, make(), latents, 9)
    assert nfe == ref_nfe == 9
    assert float((ours - ref).norm() / ref.norm()) < 1e-10


def test_singlestep_preset_is_grid_nodes_with_diffusers_order_list():
    """What the preset sets: ++3S on the grid, node2 following the solver type, get_order_list's
    orders; and the spacing it has not (diffusers' singlestep is linspace whatever the config says)."""
    cfg = {"_class_name": "DPMSolverSinglestepScheduler", "solver_order": 3, "timestep_spacing": "leading"}
    config, notes = apply_preset("diffusers", cfg, 8, RunConfig())
    assert config.solver == "dpm-solver++3s" and config.nfe is None and config.steps == 8
    assert config.options == {"nodes": "grid", "node2": "diffusers", "solver_type": "midpoint"}
    assert config.orders == (1, 2, 3, 1, 2, 3, 1, 1) and any("linspace" in n for n in notes)
    config, _ = apply_preset("diffusers", {**cfg, "solver_type": "heun", "algorithm_type": "dpmsolver",
                                           "final_sigmas_type": "sigma_min", "solver_order": 2}, 8, RunConfig())
    assert config.solver == "dpm-solver-2" and config.options["solver_type"] == "heun"
    assert config.orders == (1, 2) * 4 and config.sigmas[-1] > 0  # lower_order_final off (its default): full blocks


def test_unpatched_loop_differs_only_by_its_float32_state(models, monkeypatch):
    """Without the stand-in, diffusers' Euler rounds the float64 state to float32 each step:
    the runs then agree to float32 precision only (which is what users see)."""
    den, unet, sched = models["eps-linear"]
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref, _ = diffusers_loop(unet, scheduler("EulerDiscreteScheduler", sched, False), latents, 10)
    ours, _ = explorer_run(den, scheduler("EulerDiscreteScheduler", sched, False), latents, 10)
    rel = float((ours - ref).norm() / ref.norm())
    assert 1e-12 < rel < 1e-5


@pytest.mark.parametrize("config,match", [
    ({"_class_name": "DPMSolverSinglestepScheduler", "algorithm_type": "dpmsolver"}, "diffusers raises"),
    ({"_class_name": "DPMSolverSinglestepScheduler", "algorithm_type": "sde-dpmsolver++"}, "only dpmsolver"),
    ({"_class_name": "KDPM2DiscreteScheduler", "prediction_type": "sample"}, "only 'epsilon' and 'v_prediction'"),
    ({"_class_name": "PNDMScheduler", "num_train_timesteps": 1010}, r"⌊T/N⌋ = 101 \(odd\).* t − 50 .* t − 51"),
    ({"_class_name": "PNDMScheduler", "timestep_spacing": "linspace"}, "t − 100"),
    ({"_class_name": "PNDMScheduler", "skip_prk_steps": True, "prediction_type": "sample"}, "rejects it"),
    ({"_class_name": "UniPCMultistepScheduler", "solver_type": "bh1"}, "divides by zero at σ = 0"),
    ({"_class_name": "UniPCMultistepScheduler", "disable_corrector": [1]}, "disable_corrector"),
    ({"_class_name": "UniPCMultistepScheduler", "use_karras_sigmas": True, "final_sigmas_type": "sigma_min"},
     "repeat of σ_min"),
    ({"_class_name": "FooScheduler"}, "does not know 'FooScheduler'"),
    ({"_class_name": "DDIMScheduler", "clip_sample": False, "timestep_spacing": "linspace"}, "t − 100"),
])
def test_unreproducible_configs_say_why(config, match):
    with pytest.raises(ValueError, match=match):
        apply_preset("diffusers", config, 10, RunConfig())


@pytest.mark.parametrize("spacing,kind", [("leading", None), ("trailing", None), ("linspace", "use_exponential_sigmas")])
def test_kdpm2_grid_is_diffusers_own(spacing, kind):
    """The KDPM2 preset's grid is diffusers' interleaved one, bit for bit: σ_0, σ_mid,1, σ_1, …, 0
    with its float32 midpoints, and every timestep the loop calls the network with (the spacings
    and grids the loop test leaves out)."""
    steps = 7
    s = scheduler("KDPM2DiscreteScheduler", MODELS["v-cosine"], False, timestep_spacing=spacing, **({kind: True} if kind else {}))
    s.set_timesteps(steps)
    config, _ = apply_preset("diffusers", {**s.config, "_class_name": "KDPM2DiscreteScheduler"}, steps, RunConfig())
    ends, mids = s.sigmas[0:-2:2], s.sigmas_interpol[1:-2:2]  # σ_0 … σ_N−1, and the midpoints after each (the last: 0)
    expected = [float(v) for pair in zip(ends, mids) for v in pair]
    assert list(config.sigmas) == expected and len(expected) == 2 * steps
    assert list(config.timesteps) == s.timesteps.to(torch.float32).tolist()
    assert config.solver == "dpm2" and config.options["midpoint"] == "grid"
    assert config.init_sigma == pytest.approx(float(s.init_noise_sigma), rel=1e-7)
