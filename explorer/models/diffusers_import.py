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
from safetensors import safe_open
from safetensors.torch import load_file

from explorer.core.denoiser import Denoiser
from explorer.core.files import parse_json, save_safetensors
from explorer.core.precond import EpsilonDenoiser, VDenoiser, X0Denoiser
from explorer.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from explorer.models.limits import (MAX_CHANNELS, MAX_IMAGE_SIDE, MAX_LABELS, MAX_PARAMETERS, MAX_TABLE, check_float,
                                    check_int,
                                    check_int_list, check_parameter_count, is_number)
from explorer.models.provenance import DIFFUSERS_LICENCE_NOTE, file_sha256, json_safe, write_model_card
from explorer.models.strict_load import load_strict

PathLike = Union[str, Path]

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SCHEDULER_NAME = "scheduler_config.json"
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
TIMESTEP_MODES = ("nearest", "interpolate")
DIFFUSERS_PRECOND = "diffusers-vp"  # the "precond" of a converted one-file checkpoint


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
    steps = check_int(config.get("num_train_timesteps", 1000), 2, MAX_TABLE, "The scheduler's num_train_timesteps")
    trained = config.get("trained_betas")
    if trained is not None:
        if not isinstance(trained, list) or not 2 <= len(trained) <= MAX_TABLE or not all(map(is_number, trained)):
            raise ValueError(f"The scheduler's trained_betas must be a list of 2 to {MAX_TABLE:,} numbers.")
    schedule = config.get("beta_schedule", "linear")
    start = check_float(config.get("beta_start", 0.0001), "The scheduler's beta_start", low=0.0, high=1.0)
    end = check_float(config.get("beta_end", 0.02), "The scheduler's beta_end", low=0.0, high=1.0)
    if trained is not None:
        betas = torch.tensor(trained, dtype=torch.float32)
    elif schedule == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float32)
    elif schedule == "scaled_linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float32) ** 2
    elif schedule == "squaredcos_cap_v2":
        betas = _cosine_betas(steps)
    else:
        raise ValueError(f"Unsupported beta_schedule {str(schedule)[:40]!r}; the explorer reads "
                         f"{', '.join(BETA_SCHEDULES)} or an explicit trained_betas list.")
    if betas.ndim != 1 or len(betas) < 2 or not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError("The scheduler's β values must be a list of numbers strictly between 0 and 1.")
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float64)


# --- the denoiser -----------------------------------------------------------------------------

class TimestepUNet(torch.nn.Module):
    """A ``UNet2DModel`` called the way the explorer's prediction adapters call a network.

    ``forward(x_vp, sigma[, labels])`` turns σ into the network's timestep (nearest trained
    one, or fractional in log σ), one-hot labels into class indices, and drops the second half
    of the channels of learned-variance models. The σ table is a plain float64 attribute, not
    a buffer, so moving the model to float32 for a run does not round it.
    """

    def __init__(self, unet: torch.nn.Module, sigmas: torch.Tensor, *, timesteps: str = "nearest",
                 channels: int = 3, label_dim: int = 0, name: str = "diffusers") -> None:
        super().__init__()
        if timesteps not in TIMESTEP_MODES:
            raise ValueError(f"timesteps must be one of {', '.join(TIMESTEP_MODES)}, not {timesteps!r}.")
        self.unet = unet
        self.sigmas = sigmas.to(torch.float64)
        self.mode = timesteps
        self.pinned = None  # (σ's, timesteps) of an explicit grid while a run uses it (explorer.core.grids)
        self.channels = channels
        self.label_dim = label_dim
        self.name = name

    def nearest_index(self, sigma: torch.Tensor) -> torch.Tensor:
        table = self.sigmas.to(sigma.device)
        return (sigma.to(torch.float64).reshape(-1, 1) - table).abs().argmin(dim=1)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's timestep for each σ (int64 when nearest, float32 when interpolated)."""
        sigma = torch.as_tensor(sigma).reshape(-1)
        if self.pinned is not None:
            from explorer.core.grids import pinned_timestep

            hit = pinned_timestep(self.pinned, sigma)
            if hit is not None:
                return hit.to(sigma.device)
        if self.mode == "nearest":
            return self.nearest_index(sigma)
        table = self.sigmas.to(sigma.device)
        log_table = table.log()
        log_sigma = sigma.to(torch.float64).clamp(min=table[0], max=table[-1]).log()
        upper = torch.searchsorted(log_table, log_sigma).clamp(1, len(table) - 1)
        lower = upper - 1
        weight = (log_sigma - log_table[lower]) / (log_table[upper] - log_table[lower])
        return (lower + weight).to(torch.float32)

    def _class_indices(self, labels: Optional[torch.Tensor], batch: int, device: torch.device) -> Optional[torch.Tensor]:
        if self.label_dim == 0:
            return None
        if labels is None:
            raise ValueError(f"{self.name} is class-conditional ({self.label_dim} classes): choose a class.")
        labels = torch.as_tensor(labels, device=device)
        index = labels.argmax(dim=-1) if labels.is_floating_point() else labels.long()
        return index.reshape(-1).expand(batch) if index.numel() == 1 else index.reshape(-1)

    def forward(self, x_vp: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        weight = next(self.unet.parameters())
        classes = self._class_indices(labels, x_vp.shape[0], x_vp.device)
        out = self.unet(x_vp.to(weight.dtype), self.timestep(sigma), class_labels=classes, return_dict=False)[0]
        return out[:, : self.channels]


_ADAPTERS = {"epsilon": EpsilonDenoiser, "v_prediction": VDenoiser, "sample": X0Denoiser}


class DiffusersVPDenoiser(Denoiser):
    """A diffusers ``UNet2DModel`` on a discrete VP schedule, seen as D(x; σ).

    The ε/v/x₀ → D conversion is the explorer's own adapter (:mod:`explorer.core.precond`) with
    VP input scaling; this class adds the discrete σ grid (``round_sigma``) and provenance.
    """

    def __init__(self, net: TimestepUNet, prediction_type: str, *, source_info: Optional[dict] = None) -> None:
        super().__init__()
        if prediction_type not in _ADAPTERS:
            raise ValueError(f"Unsupported prediction_type {prediction_type!r}; "
                             f"choose one of {', '.join(_ADAPTERS)}.")
        if not bool((net.sigmas[1:] > net.sigmas[:-1]).all()):
            raise ValueError("The scheduler's noise levels do not increase with t; is the β table valid?")
        size = net.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.shape = (net.channels, *(int(s) for s in size))
        self.sigma_min, self.sigma_max = float(net.sigmas[0]), float(net.sigmas[-1])
        self.label_dim, self.name = net.label_dim, net.name
        self.data_range = (-1.0, 1.0)
        self.prediction_type = prediction_type
        self.source_info = dict(source_info or {})
        self.inner = _ADAPTERS[prediction_type](net, shape=self.shape, scaling="vp", sigma_min=self.sigma_min,
                                                sigma_max=self.sigma_max, label_dim=self.label_dim, name=self.name)

    @property
    def net(self) -> TimestepUNet:
        return self.inner.model

    @property
    def sigmas(self) -> torch.Tensor:
        """σ_t of the training table, t = 0 … T−1 (float64)."""
        return self.net.sigmas

    def round_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """The nearest σ_t of the training table (SPEC §3, iDDPM row)."""
        sigma = torch.as_tensor(sigma)
        rounded = self.sigmas.to(sigma.device)[self.net.nearest_index(sigma)].reshape(sigma.shape)
        return rounded.to(sigma.dtype if sigma.is_floating_point() else torch.float64)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.net.timestep(sigma)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.inner(x, sigma, labels)


# --- reading a folder -------------------------------------------------------------------------

def _read_json(path: Path, what: str) -> dict:
    from explorer.core.files import read_json_file

    data = read_json_file(path, what)
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
    return _weights_file(path)


def _weights_file(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
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
    _check_unet_config(config, unet_dir)
    try:
        with torch.device("meta"):  # count the weights before allocating any
            check_parameter_count(UNet2DModel.from_config(config).parameters(), f"The UNet config in {unet_dir}")
        return UNet2DModel.from_config(config)
    except (TypeError, ValueError, KeyError, RuntimeError, ArithmeticError, IndexError) as err:
        if str(err).startswith("The UNet config"):
            raise
        raise ValueError(f"The UNet config in {unet_dir} does not describe a valid UNet2DModel: {err}") from None


_UNET_INTS = {"in_channels": (1, MAX_CHANNELS), "out_channels": (1, 2 * MAX_CHANNELS), "layers_per_block": (1, 32),
              "norm_num_groups": (1, 1024), "num_class_embeds": (0, MAX_LABELS), "attention_head_dim": (1, 8192)}


def _check_unet_config(config: dict, where: Path) -> None:
    """Sizes in a UNet2DModel config, checked before diffusers builds anything from them."""
    label = f"The UNet config in {where}"
    size = config.get("sample_size", 64)
    sizes = size if isinstance(size, list) else [size]
    if not 1 <= len(sizes) <= 2:
        raise ValueError(f"{label}: sample_size must be an integer or two, not {len(sizes)} numbers.")
    for value in sizes:
        check_int(value, 1, MAX_IMAGE_SIDE, f"{label}: sample_size")
    for key, (low, high) in _UNET_INTS.items():
        if config.get(key) is not None:
            check_int(config[key], low, high, f"{label}: {key}")
    channels = config.get("block_out_channels", [64])
    check_int_list(channels, f"{label}: block_out_channels", (1, 8), (1, 8192))
    layers = config.get("layers_per_block", 2)
    estimate = 18 * (2 * layers + 1) * sum(c * c for c in channels)  # two 3×3 convs per ResNet, down and up
    if estimate > MAX_PARAMETERS:
        raise ValueError(f"{label}: the described network has at least {estimate:,} parameters, more than the limit "
                         f"of {MAX_PARAMETERS:,}.")
    for key in ("down_block_types", "up_block_types"):
        types = config.get(key, [])
        if not isinstance(types, list) or len(types) > 8 or not all(isinstance(t, str) for t in types):
            raise ValueError(f"{label}: {key} must be a list of at most 8 block names.")


def _check_scheduler(sched: dict, where: Any) -> str:
    """The prediction type of a discrete VP scheduler config (ValueError for anything else)."""
    if "beta_schedule" not in sched and "trained_betas" not in sched:
        raise ValueError(f"{where} has no beta_schedule: it does not describe a discrete VP (DDPM-type) "
                         "scheduler.")
    prediction = sched.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"{where}: unsupported prediction_type {prediction!r}; "
                         f"choose one of {', '.join(PREDICTION_TYPES)}.")
    return prediction


def _scheduler_table(sched: dict, where: Any) -> torch.Tensor:
    try:
        return alphas_cumprod_from_config(sched)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _assemble(config: dict, sched: dict, weights: dict[str, torch.Tensor], where: Path, *, name: str,
              info: dict, timesteps: str) -> DiffusersVPDenoiser:
    """Build the UNet from its config, load the weights strictly and wrap it as a denoiser."""
    prediction = _check_scheduler(sched, where)
    alphas_cumprod = _scheduler_table(sched, where)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()
    unet = _build_unet(config, where)
    load_strict(unet, weights, f"The weights in {where} do not match the UNet config")
    unet.eval().requires_grad_(False)
    channels = int(unet.config.in_channels)
    if int(unet.config.out_channels) not in (channels, 2 * channels):
        raise ValueError(f"The UNet maps {channels} to {unet.config.out_channels} channels; a denoiser needs "
                         "the same number (or twice as many, for learned variance).")
    net = TimestepUNet(unet, sigmas, timesteps=timesteps, channels=channels,
                       label_dim=int(unet.config.num_class_embeds or 0), name=name)
    info = dict(info, prediction_type=prediction, timesteps=timesteps)
    return DiffusersVPDenoiser(net, prediction, source_info=info)


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
    _check_scheduler(sched, sched_path)
    _scheduler_table(sched, sched_path)  # sizes and values checked before the weights are read
    _check_unet_config(config, unet_dir)
    weights_path, weights = _weights(unet_dir)
    info: dict[str, Any] = {
        "source_format": "diffusers", "source_file": str(weights_path), "sha256": file_sha256(weights_path),
        "model_class": "UNet2DModel", "init_kwargs": _public(config),
        "scheduler": _public(sched), "scheduler_class": sched.get("_class_name"),
    }
    name = (unet_dir.parent.name if unet_dir.name == "unet" else unet_dir.name) or "diffusers"
    denoiser = _assemble(config, sched, weights, weights_path, name=name, info=info, timesteps=timesteps)
    return denoiser.to(device)


def _public(config: dict) -> dict:
    """A diffusers config without its bookkeeping keys (``_class_name``, ``_diffusers_version``)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


# --- one-file checkpoints ---------------------------------------------------------------------

def convert_diffusers_folder(path: PathLike, out_safetensors: PathLike,
                             scheduler_config: Optional[PathLike] = None) -> Path:
    """Write a diffusers folder as one ``.safetensors`` file (precond ``diffusers-vp``) plus a model card.

    The file holds the UNet's weights under their diffusers names; its metadata (JSON text per key,
    as in SPEC §6) holds the UNet and scheduler configs, the prediction type and the source.
    """
    out = Path(out_safetensors)
    if out.suffix != ".safetensors":
        raise ValueError(f"The output file must end in .safetensors, not {out.name!r}.")
    denoiser = load_diffusers_folder(path, scheduler_config)
    info = denoiser.source_info
    meta = {
        "format": CHECKPOINT_FORMAT, "precond": DIFFUSERS_PRECOND, "prediction_type": denoiser.prediction_type,
        "timesteps": denoiser.net.mode, "arch": {"class": "UNet2DModel", **info["init_kwargs"]},
        "scheduler": info["scheduler"], "shape": list(denoiser.shape), "label_dim": denoiser.label_dim,
        "sigma_min": denoiser.sigma_min, "sigma_max": denoiser.sigma_max, "dataset": "unknown",
        "name": denoiser.name, "source": info, "licence_note": DIFFUSERS_LICENCE_NOTE,
    }
    tensors = {k: v.detach().contiguous() for k, v in denoiser.net.unet.state_dict().items()}
    save_safetensors(tensors, {k: json.dumps(json_safe(v)) for k, v in meta.items()}, out)  # atomic
    write_model_card(out.with_suffix(".md"), f"{denoiser.name} (converted diffusers UNet2DModel)", info,
                     DIFFUSERS_LICENCE_NOTE, checkpoint=out)
    return out


def is_diffusers_checkpoint(path: PathLike) -> bool:
    """True for a ``.safetensors`` file written by :func:`convert_diffusers_folder`."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception:  # not a safetensors file at all
        return False
    return meta.get("precond") == json.dumps(DIFFUSERS_PRECOND)


def load_diffusers_checkpoint(path: PathLike, *, timesteps: Optional[str] = None,
                              device: Union[str, torch.device] = "cpu") -> DiffusersVPDenoiser:
    """Open a file written by :func:`convert_diffusers_folder` as a denoiser."""
    path = Path(path)
    if not is_diffusers_checkpoint(path):
        raise ValueError(f"{path} is not a converted diffusers checkpoint (precond {DIFFUSERS_PRECOND!r}).")
    with safe_open(str(path), framework="pt") as handle:
        meta = {k: parse_json(v, f"{path.name}: metadata {k!r}") for k, v in (handle.metadata() or {}).items()}
    arch, sched = meta.get("arch"), meta.get("scheduler")
    if not isinstance(arch, dict) or not isinstance(sched, dict):
        raise ValueError(f"{path}: the metadata lacks the UNet or scheduler config.")
    config = {("_class_name" if k == "class" else k): v for k, v in arch.items()}
    sched = dict(sched, prediction_type=meta.get("prediction_type", "epsilon"))
    _, weights = _weights_file(path)
    name = meta.get("name") if isinstance(meta.get("name"), str) else path.stem
    info = dict(meta.get("source") or {}, converted_file=str(path))
    denoiser = _assemble(config, sched, weights, path, name=name, info=info,
                         timesteps=timesteps or meta.get("timesteps", "nearest"))
    return denoiser.to(device)
