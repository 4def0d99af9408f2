"""The new solvers against diffusers' schedulers in float64, on the scheduler's own σ's.

A tiny random UNet2DModel is opened as D(x; σ); diffusers runs its scheduler over the
same network, and our solver runs on the σ's diffusers chose (passed through the Python
API: the plan's t under the EDM process, where t = σ). Noise for the stochastic ones is
drawn by our run and handed to diffusers, so both sides see the very same numbers.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from test_diffusers_import import _save_model  # noqa: E402

from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.sampling import make_plan  # noqa: E402
from explorer.core.solvers import get_solver  # noqa: E402
from explorer.core.solvers.context import SolverContext  # noqa: E402
from explorer.models.diffusers_import import load_diffusers_folder  # noqa: E402

STEPS = 8
SCHED = dict(beta_schedule="scaled_linear", clip_sample=False, prediction_type="epsilon")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = _save_model(tmp_path_factory.mktemp("unet") / "m", scheduler=SCHED)
    denoiser = load_diffusers_folder(folder).to(torch.float64)
    unet = diffusers.UNet2DModel.from_pretrained(folder).to(torch.float64).eval()
    return folder, denoiser, unet


def _latents(seed: int = 4) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _scheduler(cls, folder, **overrides):
    sched = cls.from_pretrained(folder, **overrides)
    sched.alphas_cumprod = sched.alphas_cumprod.to(torch.float64)  # diffusers' table, widened before σ's are taken
    if hasattr(sched, "final_alpha_cumprod"):
        sched.final_alpha_cumprod = torch.as_tensor(sched.final_alpha_cumprod, dtype=torch.float64)
    return sched


def _ours(denoiser, solver: str, sigmas: list[float], latents: torch.Tensor, options=None, final="zero"):
    """Our solver on diffusers' σ's; returns (final state in diffusers' VP scale, the noise our
    run drew, in order)."""
    steps = len(sigmas) - 1
    config = RunConfig(solver=solver, process="edm", steps=steps, final=final, batch=latents.shape[0],
                       dtype="float64", device="cpu", options=options or {})
    plan = dataclasses.replace(make_plan(denoiser, config), t=list(sigmas))
    drawn: list[torch.Tensor] = []

    def randn_like(x):
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        drawn.append(z)
        return z

    gen = torch.Generator().manual_seed(11)
    x0 = latents * math.sqrt(1 + sigmas[0] ** 2)  # diffusers' VP x_T, unscaled (s = 1 under EDM)
    ctx = SolverContext(denoiser, plan, config, x0, randn_like, record_evals=False)
    with torch.no_grad():
        *_, last = get_solver(solver).fn(ctx)
    return last.x / math.sqrt(1 + sigmas[-1] ** 2), drawn


def _theirs(unet, sched, latents, **step_kwargs):
    x = latents * sched.init_noise_sigma
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            extra = {k: v(i) for k, v in step_kwargs.items()}
            x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x, **extra).prev_sample
    return x


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _table_sigmas(denoiser, timesteps) -> list[float]:
    return [float(denoiser.sigmas[int(t)]) for t in timesteps]


def _float64_sigmas(sched) -> None:
    """diffusers stores the σ's it stepped by in float32 and takes its coefficients from them;
    widened, both sides compute every coefficient in float64 from the same σ's."""
    sched.sigmas = sched.sigmas.double()


# diffusers' UniPC cannot step to σ = 0 with bh1 (B(h) = h = −∞) or noise prediction (σ_t·(e^h − 1) = 0·∞):
# both give NaN there, so those two run to σ_min ("sigma_min" final σ's) instead.
@pytest.mark.parametrize("variant,predict_x0,final", [("bh2", True, "zero"), ("bh1", True, "sigma_min"),
                                                      ("bh2", False, "sigma_min"), ("bh1", False, "sigma_min")])
def test_unipc_equals_diffusers(model, variant, predict_x0, final):
    folder, denoiser, unet = model
    sched = _scheduler(diffusers.UniPCMultistepScheduler, folder, solver_order=3, solver_type=variant,
                       predict_x0=predict_x0, final_sigmas_type=final)
    sched.set_timesteps(STEPS)
    _float64_sigmas(sched)
    latents = _latents()
    expected = _theirs(unet, sched, latents)
    sigmas = sched.sigmas.double().tolist()
    got, _ = _ours(denoiser, "unipc-3", sigmas, latents, final=final,
                   options={"variant": variant, "prediction": "data" if predict_x0 else "noise"})
    assert _rel(got, expected) < 1e-10


def test_deis_logrho_equals_diffusers(model):
    folder, denoiser, unet = model
    sched = _scheduler(diffusers.DEISMultistepScheduler, folder, solver_order=3)
    sched.set_timesteps(STEPS)
    _float64_sigmas(sched)
    latents = _latents(5)
    expected = _theirs(unet, sched, latents)
    got, _ = _ours(denoiser, "deis-3", sched.sigmas.double().tolist(), latents, final="sigma_min",
                   options={"basis": "logrho"})
    assert _rel(got, expected) < 1e-10


def test_plms_equals_diffusers_pndm_without_prk(model):
    folder, denoiser, unet = model
    sched = _scheduler(diffusers.PNDMScheduler, folder, skip_prk_steps=True, set_alpha_to_one=True)
    sched.set_timesteps(STEPS)
    latents = _latents(6)
    expected = _theirs(unet, sched, latents)
    grid = sorted({int(t) for t in sched.timesteps}, reverse=True)
    got, _ = _ours(denoiser, "plms", _table_sigmas(denoiser, grid) + [0.0], latents)
    assert _rel(got, expected) < 1e-10


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_ddim_eta_equals_diffusers(model, eta):
    folder, denoiser, unet = model
    sched = _scheduler(diffusers.DDIMScheduler, folder, set_alpha_to_one=True)
    sched.set_timesteps(STEPS)
    latents = _latents(7)
    sigmas = _table_sigmas(denoiser, sched.timesteps) + [0.0]
    got, drawn = _ours(denoiser, "ddim", sigmas, latents, options={"eta": eta})
    noise = drawn + [torch.zeros_like(latents)]  # the last step (to σ = 0) adds none
    expected = _theirs(unet, sched, latents, eta=lambda i: eta, variance_noise=lambda i: noise[i])
    assert len(drawn) == STEPS - 1 and _rel(got, expected) < 1e-10


def test_ddpm_equals_diffusers(model, monkeypatch):
    folder, denoiser, unet = model
    sched = _scheduler(diffusers.DDPMScheduler, folder)
    sched.set_timesteps(STEPS)
    latents = _latents(8)
    sigmas = _table_sigmas(denoiser, sched.timesteps) + [0.0]
    got, drawn = _ours(denoiser, "ddpm", sigmas, latents)
    queue = list(drawn)
    import diffusers.schedulers.scheduling_ddpm as ddpm_module

    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda shape, **kw: queue.pop(0))
    expected = _theirs(unet, sched, latents)
    assert not queue and _rel(got, expected) < 1e-10


def test_ipndm_equals_diffusers_ipndm(model):
    """IPNDMScheduler runs its own σ's (α² + β² = 1, σ = β/α) with a v-style output; we
    feed it v made from the same D, and start both after its first point, where σ = ∞."""
    _, denoiser, _ = model
    sched = diffusers.IPNDMScheduler()
    sched.set_timesteps(STEPS + 1)
    sched.betas = sched.betas.double()
    sched.alphas = (1 - sched.betas**2).sqrt()  # its α from β again in float64, so that α² + β² = 1 holds
    sched.set_begin_index(1)
    sigmas = (sched.betas[1:] / sched.alphas[1:]).tolist()  # ends with 0
    latents = _latents(9)
    x = latents.clone()  # VP state at the first finite σ
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps[1:], start=1):
            alpha, beta = float(sched.alphas[i]), float(sched.betas[i])
            d = denoiser(x / alpha, torch.tensor(beta / alpha, dtype=torch.float64))
            eps = (x - alpha * d) / beta
            x = sched.step((eps - beta * x) / alpha, t, x).prev_sample  # its ets = βx + αv = ε̂
    got, _ = _ours(denoiser, "ipndm", sigmas, latents)
    assert _rel(got, x) < 1e-10


# DPMSolverMultistepScheduler.step rounds the state to float32 on every step ("upcast to avoid
# precision issues", a downcast for float64 input), so agreement stops at float32 rounding:
# the mathematics is the same, the named cause is that cast.
@pytest.mark.parametrize("solver,solver_type,algorithm,final", [("dpm-solver++2m", "heun", "dpmsolver++", "zero"),
                                                                ("dpm-solver-2m", "heun", "dpmsolver", "sigma_min"),
                                                                ("dpm-solver++2m", "midpoint", "dpmsolver++", "zero")])
def test_dpm_solver_2m_types_equal_diffusers(model, solver, solver_type, algorithm, final):
    folder, denoiser, unet = model
    sched = _scheduler(diffusers.DPMSolverMultistepScheduler, folder, solver_order=2, solver_type=solver_type,
                       algorithm_type=algorithm, final_sigmas_type=final)
    sched.set_timesteps(STEPS)
    _float64_sigmas(sched)
    latents = _latents(10)
    expected = _theirs(unet, sched, latents)
    got, _ = _ours(denoiser, solver, sched.sigmas.double().tolist(), latents, final=final,
                   options={"solver_type": solver_type, "final_rule": "diffusers-15"})
    assert _rel(got, expected) < 1e-6
    other = "midpoint" if solver_type == "heun" else "heun"
    wrong, _ = _ours(denoiser, solver, sched.sigmas.double().tolist(), latents, final=final,
                     options={"solver_type": other, "final_rule": "diffusers-15"})
    assert _rel(wrong, expected) > 100 * _rel(got, expected)  # the test tells the two types apart


# One singlestep step of order 3 (nodes at λ_s + h/3 and λ_s + 2h/3, what dpm-solver-3 and ++3s
# take) is diffusers' DPMSolverSinglestepScheduler over the four σ's [σ_s, σ_⅓, σ_⅔, σ_t]: its
# steps of orders 1, 2, 3 go from σ_s to the two nodes and then to σ_t. diffusers' singlestep
# step keeps the state's dtype (no float32 cast), so the agreement is float64's.
@pytest.mark.parametrize("solver,algorithm,node2,solver_type", [
    ("dpm-solver++3s", "dpmsolver++", "diffusers", "midpoint"),
    ("dpm-solver++3s", "dpmsolver++", "official", "heun"),
    ("dpm-solver-3", "dpmsolver", "diffusers", "midpoint"),
])
def test_singlestep_order_3_step_equals_diffusers(model, solver, algorithm, node2, solver_type):
    folder, denoiser, unet = model
    sig_s, sig_t = float(denoiser.sigmas[800]), float(denoiser.sigmas[200])
    h = math.log(sig_s) - math.log(sig_t)
    sigmas = [sig_s * math.exp(-j * h / 3) for j in range(3)] + [sig_t]
    sched = _scheduler(diffusers.DPMSolverSinglestepScheduler, folder, solver_order=3, algorithm_type=algorithm,
                       solver_type=solver_type, final_sigmas_type="sigma_min", lower_order_final=False)
    sched.set_timesteps(3)
    assert sched.order_list == [1, 2, 3]
    sched.sigmas = torch.tensor(sigmas, dtype=torch.float64)
    sched.timesteps = denoiser.timestep(torch.tensor(sigmas[:3], dtype=torch.float64))
    sched.set_begin_index(0)
    latents = _latents(12)
    expected = _theirs(unet, sched, latents)
    options = {"node2": node2, "solver_type": solver_type}
    got, _ = _ours(denoiser, solver, [sig_s, sig_t], latents, final="sigma_min", options=options)
    assert _rel(got, expected) < 1e-10
    other = {**options, "node2": "official" if node2 == "diffusers" else "diffusers"}
    wrong, _ = _ours(denoiser, solver, [sig_s, sig_t], latents, final="sigma_min", options=other)
    assert _rel(wrong, expected) > 1e4 * max(_rel(got, expected), 1e-16)  # node2 is what makes them agree
