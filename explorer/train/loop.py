"""The training loop that made the shipped checkpoints, resumable across short GPU sessions.

A run lives in one folder::

    RUN_DIR/config.json           the TrainConfig (written once; a resume reads it back)
    RUN_DIR/training-state.pt     network, EMA, optimizer, counters and RNG state
    RUN_DIR/log.txt               progress lines (appended by every session)
    RUN_DIR/grid-<kimg>.png       EMA samples drawn now and then
    RUN_DIR/<name>.safetensors    the EMA denoiser, exported with save_checkpoint

Design choices and where they come from:
* Adam with a linear learning-rate warm-up and an EMA whose half-life is counted in images
  (EDM, Karras et al. 2022); gradient-norm clipping as a guard against rare spikes.
* bf16 autocast and channels_last on CUDA: the network runs in bf16 on the tensor cores while
  the preconditioning, loss and weights stay in float32.
* A run stops at its image budget (``kimg``), its training-time budget (``minutes``) or a
  per-process wall-clock deadline (``time_limit``), whichever comes first; it always saves its
  state before returning, so a later session resumes it bit for bit (same batches, same noise).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from explorer.train.datasets import BatchStream, ImageSet, load_dataset
from explorer.train.ema import EMA
from explorer.train.loss import make_loss

STATE_FILE = "training-state.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.txt"

# DDPM++ (Song et al. 2021 as configured by EDM) scaled down to 3.4 M parameters (1.5 GFLOP per
# 32x32 forward pass), so the float32 checkpoint (13.8 MB) stays under 16 MiB. Widths must stay
# multiples of 32: GroupNorm uses 32 groups, also on the decoder's concatenated skips.
DEFAULT_ARCH: dict[str, Any] = {
    "model_channels": 64,
    "channel_mult": [1, 1, 2],
    "channel_mult_emb": 4,
    "num_blocks": 1,
    "attn_resolutions": [16],
    "dropout": 0.1,
    "channel_mult_noise": 1,
    "embedding_type": "positional",
    "encoder_type": "standard",
    "decoder_type": "standard",
    "resample_filter": [1, 1],
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as ``config.json`` in the run folder)."""

    data: str = "fashion"
    data_dir: Optional[str] = None
    precond: str = "edm"
    arch: dict = field(default_factory=lambda: dict(DEFAULT_ARCH))
    batch: int = 256
    lr: float = 1e-3
    lr_rampup_kimg: float = 100.0
    kimg: float = 1000.0
    minutes: Optional[float] = None
    ema_halflife_kimg: float = 500.0
    ema_rampup: Optional[float] = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True
    grid_every_kimg: float = 500.0
    state_every_minutes: float = 2.0
    log_every_seconds: float = 10.0
    name: str = "denoiser"

    def __post_init__(self) -> None:
        if self.precond not in ("edm", "vp", "ve"):
            raise ValueError(f"--precond must be edm, vp or ve, not {self.precond!r}.")
        for what in ("batch", "lr", "kimg"):
            if not getattr(self, what) > 0:
                raise ValueError(f"--{what} must be positive, got {getattr(self, what)}.")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"--minutes must be positive, got {self.minutes}.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls(**json.loads(text))


@dataclass
class Progress:
    """Counters that survive a resume."""

    step: int = 0
    nimg: int = 0
    train_seconds: float = 0.0
    loss_ema: Optional[float] = None
    last_grid_kimg: float = 0.0
    sessions: int = 0
    finished: bool = False


def build_denoiser(precond: str, arch: dict, shape: tuple[int, int, int], label_dim: int = 0, name: str = "denoiser"):
    """A SongUNet F for images of ``shape`` wrapped in the chosen preconditioning."""
    from explorer.models.networks import build_denoiser as build

    channels, res, _ = shape
    full = {"class": "SongUNet", "img_resolution": res, "in_channels": channels, "out_channels": channels,
            "label_dim": label_dim, **arch}
    return build(precond, full, name=name)


def learning_rate(config: TrainConfig, nimg: int) -> float:
    """Linear warm-up over ``lr_rampup_kimg`` thousand images, then constant (EDM's schedule)."""
    if config.lr_rampup_kimg <= 0:
        return config.lr
    return config.lr * min(nimg / (config.lr_rampup_kimg * 1000), 1.0)


class Trainer:
    """One training session over a run folder: create or resume, step until a limit, save."""

    def __init__(
        self,
        config: TrainConfig,
        out: Path,
        device: str = "auto",
        data: Optional[ImageSet] = None,
        log: Callable[[str], None] = print,
        grid_fn: Optional[Callable[["Trainer", Path], None]] = None,
    ) -> None:
        self.config, self.out = config, Path(out)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        self._print, self.grid_fn = log, grid_fn
        self.data = data if data is not None else load_dataset(config.data, config.data_dir)
        torch.manual_seed(config.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.net = build_denoiser(config.precond, config.arch, self.data.shape, name=config.name).to(self.device).train()
        if config.channels_last and self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema = EMA(self.net, config.ema_halflife_kimg * 1000, config.ema_rampup)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8,
                                    fused=self.device.type == "cuda")
        self.loss_fn = make_loss(config.precond)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.stream = BatchStream(self.data, config.batch, self.device, self.generator)
        self.progress = Progress()
        self._pending: list[torch.Tensor] = []

    # ------------------------------------------------------------------ files
    def log(self, line: str) -> None:
        self._print(line)
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def save_state(self) -> None:
        """Write the whole training state atomically (a crash mid-write keeps the old file)."""
        state = {
            "net": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "opt": self.opt.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "progress": dataclasses.asdict(self.progress),
            "config": dataclasses.asdict(self.config),
        }
        tmp = self.out / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out / STATE_FILE)

    def load_state(self) -> None:
        state = torch.load(self.out / STATE_FILE, map_location=self.device, weights_only=False)
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.progress = Progress(**state["progress"])

    # ------------------------------------------------------------------ steps
    def step(self) -> torch.Tensor:
        """One optimizer step on a fresh batch; returns the batch's mean loss (on the device, no sync)."""
        cfg = self.config
        images = self.stream.next()
        if cfg.channels_last and self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        use_bf16 = cfg.bf16 and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = self.loss_fn(self.net, images, None, self.generator).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, self.progress.nimg)
        params = [p for p in self.net.parameters() if p.grad is not None]
        for p in params:  # a rare non-finite gradient must not poison the weights
            torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.opt.step()
        self.progress.step += 1
        self.progress.nimg += cfg.batch
        self.ema.update(self.net, cfg.batch, self.progress.nimg)
        return loss.detach()

    def _budget_reached(self) -> bool:
        cfg, p = self.config, self.progress
        if p.nimg >= cfg.kimg * 1000:
            return True
        return cfg.minutes is not None and p.train_seconds >= cfg.minutes * 60

    def run(self, deadline: Optional[float] = None, resume: bool = False, max_steps: Optional[int] = None) -> Progress:
        """Train until a budget or the deadline; save state; export the EMA.

        ``deadline`` is a ``time.time()`` value by which the process must be done; the loop
        leaves a margin for the final save, export and sample grid, and stops early rather
        than be killed mid-write.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and (self.out / STATE_FILE).is_file():
            self.load_state()
            self.log(f"resumed at step {self.progress.step}, {self.progress.nimg / 1000:.1f} kimg")
        elif (self.out / STATE_FILE).is_file():
            raise ValueError(f"{self.out} already holds a training run; pass --resume to continue it or choose another --out.")
        (self.out / CONFIG_FILE).write_text(self.config.to_json())
        self.progress.sessions += 1
        self.log(f"device {self._device_name()}, {count_parameters(self.net.model) / 1e6:.2f} M parameters, "
                 f"data {self.data.name} {tuple(self.data.images.shape)}, seed {self.config.seed}")
        stop = self._train(deadline, max_steps)
        self._fold_losses()
        self.progress.finished = self._budget_reached()
        self.save_state()
        if self.grid_fn is not None:
            self.grid_fn(self, self.out / f"grid-{self.progress.nimg // 1000:06d}kimg.png")
        export_path = self.export()
        self.log(f"stopped ({stop}) at step {self.progress.step}, {self.progress.nimg / 1000:.1f} kimg, "
                 f"{self.progress.train_seconds / 60:.2f} min of training, loss {self.progress.loss_ema or float('nan'):.4f}; "
                 f"exported {export_path.name}")
        return self.progress

    def _train(self, deadline: Optional[float], max_steps: Optional[int]) -> str:
        """Step until a limit; ``train_seconds`` accumulates wall time inside this loop."""
        cfg, p = self.config, self.progress
        last_tick = last_log = last_state = window_t0 = time.time()
        window_img = steps_here = 0
        step_seconds = 0.0
        while True:
            now = time.time()
            p.train_seconds += now - last_tick
            last_tick = now
            if self._budget_reached():
                return "budget reached"
            if max_steps is not None and steps_here >= max_steps:
                return "max steps"
            if deadline is not None and now + 20.0 + 5 * step_seconds > deadline:
                return "time limit"
            self._pending.append(self.step())
            steps_here += 1
            window_img += cfg.batch
            if len(self._pending) >= 50:
                self._fold_losses()  # also bounds how far the CPU runs ahead of the GPU
            if steps_here > 20:
                step_seconds = (time.time() - window_t0) / max(window_img / cfg.batch, 1)
            if time.time() - last_log >= cfg.log_every_seconds:
                self._fold_losses()
                now = time.time()
                rate = window_img / max(now - window_t0, 1e-9)
                self.log(f"step {p.step:7d}  kimg {p.nimg / 1000:9.1f}  loss {p.loss_ema:.4f}  "
                         f"img/s {rate:8.0f}  lr {learning_rate(cfg, p.nimg):.2e}  train min {p.train_seconds / 60:6.2f}")
                last_log, window_img, window_t0 = now, 0, now
            if time.time() - last_state >= cfg.state_every_minutes * 60:
                self.save_state()
                last_state = time.time()
            if self.grid_fn is not None and p.nimg / 1000 - p.last_grid_kimg >= cfg.grid_every_kimg:
                p.last_grid_kimg = p.nimg / 1000
                self.grid_fn(self, self.out / f"grid-{p.nimg // 1000:06d}kimg.png")

    def _fold_losses(self) -> None:
        """Average losses of recent steps into a running value (one device sync for many steps)."""
        if not self._pending:
            return
        values = torch.stack(self._pending).float().cpu().tolist()
        self._pending = []
        for v in values:
            self.progress.loss_ema = v if self.progress.loss_ema is None else 0.98 * self.progress.loss_ema + 0.02 * v

    def _device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"

    def export(self) -> Path:
        """Write the EMA denoiser as ``RUN_DIR/<name>.safetensors`` with the training record."""
        from explorer.models.checkpoint import save_checkpoint

        cfg, p = self.config, self.progress
        path = self.out / f"{cfg.name}.safetensors"
        ema = copy.deepcopy(self.ema.module).float().to(memory_format=torch.contiguous_format)
        train_info = {
            "steps": p.step,
            "images_seen": p.nimg,
            "gpu_seconds" if self.device.type == "cuda" else "train_seconds": round(p.train_seconds, 1),
            "device": self._device_name(),
            "final_loss": round(p.loss_ema, 5) if p.loss_ema is not None else None,
            "seed": cfg.seed,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "loss": cfg.precond,
            "ema_halflife_kimg": cfg.ema_halflife_kimg,
            "finished": p.finished,
            "card": f"{cfg.name}.md",
        }
        save_checkpoint(path, ema, dataset=self.data.name, train=train_info)
        return path


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
