"""A diffusers UNet2DModel folder opens as D(x; σ), and DDIM over it equals diffusers' own DDIM."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from explorer.models.diffusers_import import alphas_cumprod_from_config, load_diffusers_folder  # noqa: E402

UNET_KWARGS = dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                   up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                   norm_num_groups=8, attention_head_dim=8)


def _save_model(folder: Path, *, scheduler: dict, layout: str = "beside", seed: int = 0, **unet_kwargs) -> Path:
    """A small random UNet2DModel saved with save_pretrained, its scheduler config placed per layout."""
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(**{**UNET_KWARGS, **unet_kwargs})
    with torch.no_grad():  # make every layer matter (some diffusers layers start at zero)
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    unet.save_pretrained(folder)
    sched = diffusers.DDIMScheduler(**scheduler)
    target = {"beside": folder, "subfolder": folder / "scheduler", "none": None}[layout]
    if target is not None:
        sched.save_config(target)
    return folder


def _diffusers_ddim(unet, sched, latents: torch.Tensor, steps: int) -> torch.Tensor:
    sched.set_timesteps(steps)
    x = latents
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
    return x


def _our_ddim(denoiser, sigmas: list[float], latents: torch.Tensor) -> torch.Tensor:
    """DPM-Solver-1 (= DDIM) in σ terms over D (SPEC §4): x_t = (α_t/α_s) x_s − σ̄_t (e^h − 1) ε̂."""
    alpha = [1 / math.sqrt(1 + s * s) for s in sigmas]
    x = latents  # VP-scaled state, x = α · (unscaled x)
    with torch.no_grad():
        for s_sig, t_sig, a_s, a_t in zip(sigmas[:-1], sigmas[1:], alpha[:-1], alpha[1:]):
            denoised = denoiser(x / a_s, torch.tensor(s_sig, dtype=x.dtype))
            if t_sig == 0:
                x = denoised
                continue
            eps = (x - a_s * denoised) / (a_s * s_sig)
            h = math.log(s_sig) - math.log(t_sig)
            x = (a_t / a_s) * x - a_t * t_sig * math.expm1(h) * eps
    return x


@pytest.mark.parametrize("prediction,schedule,alpha_to_one", [
    ("epsilon", "linear", True),
    ("v_prediction", "scaled_linear", False),
    ("sample", "squaredcos_cap_v2", True),
    ("epsilon", "squaredcos_cap_v2", False),
])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_ddim_over_our_denoiser_equals_diffusers_ddim(tmp_path, prediction, schedule, alpha_to_one, dtype, tol):
    scheduler = dict(num_train_timesteps=1000, beta_schedule=schedule, clip_sample=False,
                     set_alpha_to_one=alpha_to_one, prediction_type=prediction)
    folder = _save_model(tmp_path / "m", scheduler=scheduler)
    denoiser = load_diffusers_folder(folder).to(dtype)
    unet = diffusers.UNet2DModel.from_pretrained(folder).to(dtype).eval()
    sched = diffusers.DDIMScheduler.from_pretrained(folder)
    # diffusers keeps ᾱ in float32 and takes square roots there; widen its table for the float64 run
    sched.alphas_cumprod = sched.alphas_cumprod.to(dtype)
    sched.final_alpha_cumprod = sched.final_alpha_cumprod.to(dtype)
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=dtype)
    expected = _diffusers_ddim(unet, sched, latents, steps=10)

    table = denoiser.sigmas
    sigmas = [float(table[int(t)]) for t in sched.timesteps]
    sigmas.append(0.0 if alpha_to_one else float(table[0]))
    ours = _our_ddim(denoiser, sigmas, latents * 1.0)
    scale = expected.abs().max()
    assert (ours - expected).abs().max() / scale < tol


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_engine_ddim_on_diffusers_grid_equals_diffusers_ddim(tmp_path, prediction, dtype, tol):
    """The explorer's own ddim solver, run on diffusers' timestep grid, gives diffusers' result."""
    import dataclasses

    from explorer.core.config import RunConfig
    from explorer.core.sampling import make_plan, sample_steps

    scheduler = dict(beta_schedule="squaredcos_cap_v2", clip_sample=False, prediction_type=prediction)
    folder = _save_model(tmp_path / "m", scheduler=scheduler)
    denoiser = load_diffusers_folder(folder)
    torch_dtype = getattr(torch, dtype)
    unet = diffusers.UNet2DModel.from_pretrained(folder).to(torch_dtype).eval()
    sched = diffusers.DDIMScheduler.from_pretrained(folder)
    sched.alphas_cumprod = sched.alphas_cumprod.to(torch_dtype)
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch_dtype)
    expected = _diffusers_ddim(unet, sched, latents, steps=8)

    config = RunConfig(solver="ddim", process="edm", steps=8, batch=2, dtype=dtype, device="cpu")
    sigmas = [float(denoiser.sigmas[int(t)]) for t in sched.timesteps]
    plan = dataclasses.replace(make_plan(denoiser, config), t=sigmas + [0.0])  # process edm: t = σ
    # diffusers starts from x_T ~ N(0, I) in VP space, i.e. x = sqrt(1 + σ²) x_T unscaled
    noise = latents * math.sqrt(1 + sigmas[0] ** 2) / sigmas[0]
    *_, last = sample_steps(denoiser, config, noise=noise, plan=plan)
    assert last.sigma == 0 and (last.x - expected).abs().max() / expected.abs().max() < tol


def test_table_matches_diffusers_and_sets_the_sigma_range(tmp_path):
    for schedule in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        config = dict(num_train_timesteps=1000, beta_schedule=schedule, beta_start=0.00085, beta_end=0.012)
        theirs = diffusers.DDPMScheduler(**config).alphas_cumprod.double()
        assert torch.equal(alphas_cumprod_from_config(config), theirs), schedule
    folder = _save_model(tmp_path / "m", scheduler=dict(beta_schedule="linear"))
    denoiser = load_diffusers_folder(folder)
    abar = diffusers.DDIMScheduler(beta_schedule="linear").alphas_cumprod.double()
    assert denoiser.sigma_min == pytest.approx(math.sqrt((1 - abar[0]) / abar[0]), rel=1e-12)
    assert denoiser.sigma_max == pytest.approx(math.sqrt((1 - abar[-1]) / abar[-1]), rel=1e-12)
    assert denoiser.shape == (3, 8, 8) and denoiser.label_dim == 0
    assert denoiser.source_info["prediction_type"] == "epsilon" and len(denoiser.source_info["sha256"]) == 64


def test_round_sigma_and_timesteps(tmp_path):
    folder = _save_model(tmp_path / "m", scheduler=dict(beta_schedule="linear"), layout="subfolder")
    nearest = load_diffusers_folder(folder)
    table = nearest.sigmas
    between = math.sqrt(float(table[400] * table[401]))  # geometric midpoint: t = 400.5 in log σ
    rounded = nearest.round_sigma(torch.tensor([between * 0.999, float(table[10]), 1e6]))
    assert rounded.tolist() == pytest.approx([float(table[400]), float(table[10]), float(table[-1])], rel=1e-6)
    assert nearest.timestep(torch.tensor([float(table[123]), between * 1.001])).tolist() == [123, 401]
    smooth = load_diffusers_folder(folder, timesteps="interpolate")
    assert smooth.timestep(torch.tensor([between], dtype=torch.float64)).item() == pytest.approx(400.5, abs=1e-5)
    x = torch.randn(1, 3, 8, 8)
    sigma = torch.tensor(float(table[250]))
    assert torch.allclose(smooth(x * 3, sigma), nearest(x * 3, sigma), atol=1e-6)
    assert not torch.allclose(smooth(x, torch.tensor(between)), nearest(x, torch.tensor(between)), atol=1e-6)


def test_class_conditional_model_uses_the_labels(tmp_path):
    folder = _save_model(tmp_path / "c", scheduler=dict(beta_schedule="linear"), num_class_embeds=4)
    denoiser = load_diffusers_folder(folder)
    assert denoiser.label_dim == 4
    unet = diffusers.UNet2DModel.from_pretrained(folder).eval()
    x, sigma = torch.randn(2, 3, 8, 8), float(denoiser.sigmas[300])
    labels = torch.nn.functional.one_hot(torch.tensor([3, 1]), 4).float()
    with torch.no_grad():
        eps = unet(x / math.sqrt(1 + sigma ** 2), torch.tensor([300, 300]), class_labels=torch.tensor([3, 1])).sample
        got = denoiser(x, torch.tensor(sigma), labels)
    assert torch.allclose(got, x - sigma * eps, atol=1e-5)
    assert not torch.allclose(got, denoiser(x, torch.tensor(sigma), labels.flip(0)), atol=1e-4)
    with pytest.raises(ValueError, match="choose a class"):
        denoiser(x, torch.tensor(sigma))


def test_scheduler_config_can_be_given_explicitly(tmp_path):
    folder = _save_model(tmp_path / "m", scheduler=dict(beta_schedule="scaled_linear",
                                                         prediction_type="v_prediction"), layout="none")
    with pytest.raises(ValueError, match="scheduler_config.json"):
        load_diffusers_folder(folder)
    diffusers.DDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction").save_config(tmp_path / "s")
    denoiser = load_diffusers_folder(folder, scheduler_config=tmp_path / "s" / "scheduler_config.json")
    assert denoiser.prediction_type == "v_prediction"


def test_pipeline_layout_is_found(tmp_path):
    _save_model(tmp_path / "pipe" / "unet", scheduler=dict(beta_schedule="linear"), layout="none")
    diffusers.DDPMScheduler(beta_schedule="linear").save_config(tmp_path / "pipe" / "scheduler")
    assert load_diffusers_folder(tmp_path / "pipe").name == "pipe"


def test_folder_without_weights_is_refused(tmp_path):
    folder = _save_model(tmp_path / "m", scheduler=dict(beta_schedule="linear"))
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="has no weights"):
        load_diffusers_folder(folder)
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x02.")
    with pytest.raises(ValueError, match=r"\.bin \(a pickle\)"):
        load_diffusers_folder(folder)


def test_config_not_matching_weights_is_refused(tmp_path):
    folder = _save_model(tmp_path / "m", scheduler=dict(beta_schedule="linear"))
    config = json.loads((folder / "config.json").read_text())
    config["block_out_channels"] = [16, 48]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match the UNet config.*wrong shape"):
        load_diffusers_folder(folder)


@pytest.mark.parametrize("change,message", [
    ({"beta_schedule": "sigmoid"}, "Unsupported beta_schedule"),
    ({"prediction_type": "score"}, "unsupported prediction_type"),
    ({"rescale_betas_zero_snr": True}, "zero terminal SNR"),
])
def test_unsupported_scheduler_settings_are_named(tmp_path, change, message):
    folder = _save_model(tmp_path / "m", scheduler=dict(beta_schedule="linear"))
    config = json.loads((folder / "scheduler_config.json").read_text())
    (folder / "scheduler_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=message):
        load_diffusers_folder(folder)


def test_not_a_folder_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a folder"):
        load_diffusers_folder(tmp_path / "model.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_diffusers_folder(tmp_path / "empty")
    shutil.rmtree(tmp_path / "empty")


def test_convert_folder_to_one_file_and_back(tmp_path, capsys):
    from explorer.cli import main
    from explorer.models.diffusers_import import is_diffusers_checkpoint, load_diffusers_checkpoint

    folder = _save_model(tmp_path / "m", scheduler=dict(beta_schedule="scaled_linear", prediction_type="v_prediction"),
                         num_class_embeds=2)
    out = tmp_path / "m.safetensors"
    assert main(["convert", str(folder), str(out)]) == 0
    assert is_diffusers_checkpoint(out) and "licence" in out.with_suffix(".md").read_text().lower()
    original, converted = load_diffusers_folder(folder), load_diffusers_checkpoint(out)
    assert converted.prediction_type == "v_prediction" and converted.label_dim == 2
    assert converted.source_info["sha256"] == original.source_info["sha256"]
    x, labels = torch.randn(2, 3, 8, 8), torch.eye(2)[[1, 0]]
    sigma = torch.tensor([0.7, 30.0])
    with torch.no_grad():
        assert torch.equal(converted(x, sigma, labels), original(x, sigma, labels))
    assert main(["convert", str(folder), str(tmp_path / "x.pt")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    torch.save({"a": torch.ones(1)}, tmp_path / "not.safetensors")
    assert not is_diffusers_checkpoint(tmp_path / "not.safetensors")
