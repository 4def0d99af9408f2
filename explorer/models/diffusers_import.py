"""Open a local diffusers ``UNet2DModel`` folder as a denoiser D(x; σ).

A diffusers pixel-space model is a network ε̂(x_t, t) (or v̂, or x̂₀) trained on a *discrete* VP
process: ``x_t = sqrt(ᾱ_t) y + sqrt(1 − ᾱ_t) n`` for integer t, with ᾱ from the scheduler's β table.
In the explorer's unscaled space (SPEC §1) that is ``x = y + σ n`` with ``σ_t = sqrt((1 − ᾱ_t)/ᾱ_t)``
and ``x_t = x / sqrt(1 + σ²)``, so the model becomes a denoiser exactly like EDM's iDDPM row
(SPEC §3): c_skip = 1, c_out = −σ, c_in = 1/sqrt(σ² + 1), and σ is turned into a timestep — the
nearest discrete one by default, or a fractional one interpolated in log σ.

``diffusers`` is an optional dependency (``pip install diffusers``); it is imported only when a
folder is opened. Weights are read from ``.safetensors`` only, never from pickles.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Union

import torch
from safetensors.torch import load_file

from explorer.core.denoiser import Denoiser, check_shape
from explorer.models.provenance import file_sha256

PathLike = Union[str, Path]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SCHEDULER_NAME = "scheduler_config.json"
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_MODES = ("nearest", "interpolate")


# --- the discrete VP schedule -----------------------------------------------------------------

def _cosine_betas(steps: int, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), β capped."""
    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
    return torch.tensor(betas, dtype=torch.float32)


def alphas_cumprod_from_config(config: dict) -> torch.Tensor:
    """ᾱ_t for t = 0 … T−1 as the model was trained, returned in float64.

    diffusers builds β and ᾱ in float32 (``linspace`` then ``cumprod``); the same float32 table is
    reproduced here so that timesteps and coefficients agree with its schedulers to the last bit,
    and only then widened to float64.
    """
    if config.get("rescale_betas_zero_snr"):
        raise ValueError("This scheduler rescales β to zero terminal SNR (σ_max = ∞), which the explorer "
                         "does not support.")
    steps = int(config.get("num_train_timesteps", 1000))
    if steps < 2:
        raise ValueError(f"The scheduler has {steps} training timesteps; at least 2 are needed.")
    trained = config.get("trained_betas")
    schedule = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if trained is not None:
        betas = torch.tensor(trained, dtype=torch.float32)
    elif schedule == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float32)
    elif schedule == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float32) ** 2
    elif schedule == "squaredcos_cap_v2":
        betas = _cosine_betas(steps)
    else:
        raise ValueError(f"Unsupported beta_schedule {schedule!r}; the explorer reads "
                         f"{', '.join(BETA_SCHEDULES)} or an explicit trained_betas list.")
    if betas.ndim != 1 or len(betas) < 2 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError("The scheduler's β values must be a list of numbers strictly between 0 and 1.")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)


# --- the denoiser -----------------------------------------------------------------------------

class DiffusersVPDenoiser(Denoiser):
    """A diffusers ``UNet2DModel`` on a discrete VP schedule, seen as D(x; σ).

    The σ table is a plain float64 attribute (not a buffer), so moving the denoiser to float32
    for a run does not round it.
    """

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: torch.Tensor, prediction_type: str,
                 *, timesteps: str = "nearest", name: str = "diffusers", source_info: Optional[dict] = None,
                 variance_channels: bool = False) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"Unsupported prediction_type {prediction_type!r}; "
                             f"choose one of {', '.join(PREDICTION_TYPES)}.")
        if timesteps not in TIMESTEP_MODES:
            raise ValueError(f"timesteps must be one of {', '.join(TIMESTEP_MODES)}, not {timesteps!r}.")
        self.unet = unet
        self.prediction_type = prediction_type
        self.timestep_mode = timesteps
        self.variance_channels = variance_channels
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().to(torch.float64)
        if not bool((self.sigmas[1:] > self.sigmas[:-1]).all()):
            raise ValueError("The scheduler's noise levels do not increase with t; is the β table valid?")
        config = unet.config
        size = config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.shape = (int(config.in_channels), *(int(s) for s in size))
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])
        self.label_dim = int(config.num_class_embeds or 0)
        self.data_range = (-1.0, 1.0)
        self.name = name
        self.source_info = dict(source_info or {})

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """The nearest σ_t of the training table (SPEC §3, iDDPM row)."""
        sigma = torch.as_tensor(sigma)
        table = self.sigmas.to(sigma.device)
        index = (sigma.to(torch.float64).reshape(-1, 1) - table).abs().argmin(dim=1)
        return table[index].reshape(sigma.shape).to(sigma.dtype if sigma.is_floating_point() else torch.float64)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's timestep for σ: nearest integer t, or t interpolated linearly in log σ."""
        table = self.sigmas.to(sigma.device)
        sigma = sigma.to(torch.float64).reshape(-1)
        if self.timestep_mode == "nearest":
            return (sigma.reshape(-1, 1) - table).abs().argmin(dim=1)
        log_table = table.log()
        log_sigma = sigma.clamp(min=table[0], max=table[-1]).log()
        upper = torch.searchsorted(log_table, log_sigma).clamp(1, len(table) - 1)
        lower = upper - 1
        weight = (log_sigma - log_table[lower]) / (log_table[upper] - log_table[lower])
        return (lower + weight).clamp(0, len(table) - 1).to(torch.float32)

    def _class_labels(self, labels: Optional[torch.Tensor], batch: int, device: torch.device) -> Optional[torch.Tensor]:
        if self.label_dim == 0:
            return None
        if labels is None:
            raise ValueError(f"{self.name} is class-conditional ({self.label_dim} classes): choose a class.")
        labels = torch.as_tensor(labels, device=device)
        index = labels.argmax(dim=-1) if labels.ndim == 2 else labels.long()
        return index.expand(batch) if index.numel() == 1 else index

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_shape(x, self.shape, self.name)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        sigma = sigma.expand(x.shape[0]) if sigma.numel() == 1 else sigma
        column = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        scale = 1 / (1 + column ** 2).sqrt()  # α_t = sqrt(ᾱ) for this σ
        weight = next(self.unet.parameters())
        net_in = (x * scale).to(weight.dtype)
        out = self.unet(net_in, self.timestep(sigma), class_labels=self._class_labels(labels, x.shape[0], x.device),
                        return_dict=False)[0]
        out = out[:, : self.shape[0]] if self.variance_channels else out
        out = out.to(x.dtype)
        if self.prediction_type == "epsilon":
            return x - column * out
        if self.prediction_type == "v_prediction":  # x0 = α x_t − sqrt(1 − ᾱ) v
            return scale * scale * x - column * scale * out
        return out


# --- reading a folder -------------------------------------------------------------------------

def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"Cannot read the {what} {path}: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"The {what} {path} does not hold a JSON object.")
    return data


def _unet_folder(path: Path) -> Path:
    """The folder that holds the UNet's config: the path itself, or its ``unet/`` (pipeline layout)."""
    if path.is_file() and path.name == "config.json":
        path = path.parent
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; a diffusers model is a folder with config.json and "
                         f"{WEIGHTS_NAME}.")
    if not (path / "config.json").is_file() and (path / "unet" / "config.json").is_file():
        return path / "unet"
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} has no config.json; is it a diffusers UNet2DModel folder?")
    return path


def _scheduler_file(unet_dir: Path, given: Optional[PathLike]) -> Path:
    if given is not None:
        given = Path(given)
        candidate = given / SCHEDULER_NAME if given.is_dir() else given
        if not candidate.is_file():
            raise ValueError(f"Scheduler config {candidate} does not exist.")
        return candidate
    for candidate in (unet_dir / SCHEDULER_NAME, unet_dir / "scheduler" / SCHEDULER_NAME,
                      unet_dir.parent / "scheduler" / SCHEDULER_NAME):
        if candidate.is_file():
            return candidate
    raise ValueError(f"No {SCHEDULER_NAME} found in {unet_dir}, its scheduler/ subfolder or a sibling "
                     "scheduler/ folder; pass the scheduler config explicitly.")


def _weights(unet_dir: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = unet_dir / WEIGHTS_NAME
    if not path.is_file():
        if (unet_dir / "diffusion_pytorch_model.bin").is_file():
            raise ValueError(f"{unet_dir} has only diffusion_pytorch_model.bin (a pickle); the explorer reads "
                             f"weights from {WEIGHTS_NAME} only. Re-save it with save_pretrained().")
        raise ValueError(f"{unet_dir} has no weights: {WEIGHTS_NAME} is missing.")
    try:
        return path, load_file(str(path))
    except Exception as err:  # safetensors raises its own error type for damaged files
        raise ValueError(f"Cannot read the weights {path}: {err}") from None


def _build_unet(config: dict, unet_dir: Path) -> torch.nn.Module:
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise ValueError("Opening a diffusers folder needs the optional package diffusers: "
                         "pip install 'diffusion-explorer[diffusers]'.") from None
    kind = config.get("_class_name", "UNet2DModel")
    if kind != "UNet2DModel":
        raise ValueError(f"{unet_dir} holds a {kind}; only pixel-space UNet2DModel folders are supported.")
    if config.get("time_embedding_type", "positional") == "fourier":
        raise ValueError(f"{unet_dir} is a Fourier-embedded (continuous VE) UNet; only discrete VP models "
                         "are supported.")
    if config.get("class_embed_type") is not None:
        raise ValueError(f"class_embed_type {config['class_embed_type']!r} is not supported; only plain "
                         "num_class_embeds class conditioning is.")
    try:
        return UNet2DModel.from_config(config)
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"The config.json in {unet_dir} does not describe a valid UNet2DModel: {err}") from None


def _load_strict(unet: torch.nn.Module, weights: dict[str, torch.Tensor], where: Path) -> None:
    expected = unet.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:3])}{' …' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items]
        raise ValueError(f"The weights in {where} do not match its config.json ({'; '.join(parts)}).")
    unet.load_state_dict(weights, strict=True)


def load_diffusers_folder(path: PathLike, scheduler_config: Optional[PathLike] = None, *,
                          timesteps: str = "nearest", device: Union[str, torch.device] = "cpu") -> DiffusersVPDenoiser:
    """Open a local diffusers ``UNet2DModel`` folder as a :class:`Denoiser`.

    Args:
        path: the model folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), or a pipeline
            folder whose ``unet/`` holds them.
        scheduler_config: ``scheduler_config.json`` (or its folder); by default looked for beside the
            weights, in ``scheduler/`` below them, or in a sibling ``scheduler/`` folder.
        timesteps: ``"nearest"`` (σ → nearest trained timestep) or ``"interpolate"`` (fractional t).
    """
    unet_dir = _unet_folder(Path(path))
    config = _read_json(unet_dir / "config.json", "model config")
    sched_path = _scheduler_file(unet_dir, scheduler_config)
    sched = _read_json(sched_path, "scheduler config")
    if "beta_schedule" not in sched and "trained_betas" not in sched:
        raise ValueError(f"{sched_path} has no beta_schedule: it does not describe a discrete VP (DDPM-type) "
                         "scheduler.")
    prediction = sched.get("prediction_type", "epsilon")
    alphas_cumprod = alphas_cumprod_from_config(sched)
    weights_path, weights = _weights(unet_dir)
    unet = _build_unet(config, unet_dir)
    _load_strict(unet, weights, weights_path)
    unet.eval().requires_grad_(False)
    channels = int(unet.config.in_channels)
    variance = int(unet.config.out_channels) == 2 * channels
    if not variance and int(unet.config.out_channels) != channels:
        raise ValueError(f"The UNet maps {channels} to {unet.config.out_channels} channels; a denoiser needs "
                         "the same number (or twice as many, for learned variance).")
    info: dict[str, Any] = {
        "source_format": "diffusers", "source_file": str(weights_path), "sha256": file_sha256(weights_path),
        "model_class": "UNet2DModel", "init_kwargs": {k: v for k, v in config.items() if not k.startswith("_")},
        "scheduler": {k: v for k, v in sched.items() if not k.startswith("_")},
        "scheduler_class": sched.get("_class_name"), "prediction_type": prediction, "timesteps": timesteps,
    }
    name = (unet_dir.parent.name if unet_dir.name == "unet" else unet_dir.name) or "diffusers"
    denoiser = DiffusersVPDenoiser(unet, alphas_cumprod, prediction, timesteps=timesteps, name=name,
                                   source_info=info, variance_channels=variance)
    return denoiser.to(device)
