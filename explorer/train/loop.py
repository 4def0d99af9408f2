"""The training loop that made the shipped checkpoints, resumable across short GPU sessions.

A run lives in one folder::

    RUN_DIR/config.json           the TrainConfig (written once; a resume reads it back)
    RUN_DIR/state/*.safetensors   network, EMA, Adam moments, counters and RNG states, in files
                                  of at most 16 MB each (see explorer.train.state)
    RUN_DIR/log.txt               progress lines (appended by every session)
    RUN_DIR/grid-<kimg>.png       EMA samples drawn now and then
    RUN_DIR/<name>.safetensors    the EMA denoiser, exported with save_checkpoint
    RUN_DIR/<name>-early.safetensors  the EMA at ``early_minutes`` of training (a weaker guide
                                  for EDM2's autoguidance, Karras et al. 2024)

Design choices and where they come from:
* Adam with a linear learning-rate warm-up and an EMA whose half-life is counted in images
  (EDM, Karras et al. 2022); gradient-norm clipping as a guard against rare spikes.
* bf16 autocast and channels_last on CUDA: the network runs in bf16 on the tensor cores while
  the preconditioning, loss and weights stay in float32.
* ``fast``: the path for a big GPU. The data set stays on the device as uint8 and each batch is
  converted and flipped there, channels_last everywhere, losses are only read back every
  ``log_every_steps`` steps (no host sync per step), and with ``compile`` the denoiser runs
  through ``torch.compile`` (falling back to eager if compilation fails). A batch drawn the
  fast way is bit-identical to one drawn the plain way, so the two loss curves agree.
* ``cond``: a class-conditional network (one-hot labels, EDM's convention) trained with label
  dropout, so that the all-zero label gives the unconditional model classifier-free guidance needs.
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
from explorer.train.state import has_state, read_state, write_state

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
    log_every_steps: int = 50
    name: str = "denoiser"
    fast: bool = False
    compile: bool = False
    cond: bool = False
    label_dropout: float = 0.0
    early_minutes: Optional[float] = None

    def __post_init__(self) -> None:
        if self.precond not in ("edm", "vp", "ve"):
            raise ValueError(f"--precond must be edm, vp or ve, not {self.precond!r}.")
        for what in ("batch", "lr", "kimg"):
            if not getattr(self, what) > 0:
                raise ValueError(f"--{what} must be positive, got {getattr(self, what)}.")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"--minutes must be positive, got {self.minutes}.")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"--label-dropout must lie in [0, 1), got {self.label_dropout}.")
        if self.label_dropout and not self.cond:
            raise ValueError("--label-dropout needs --cond (a class-conditional model).")
        if self.log_every_steps < 1:
            raise ValueError(f"log_every_steps must be at least 1, got {self.log_every_steps}.")

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
    early_kimg: Optional[float] = None


def build_denoiser(precond: str, arch: dict, shape: tuple[int, int, int], label_dim: int = 0, name: str = "denoiser",
                   label_dropout: float = 0.0):
    """A SongUNet F for images of ``shape`` wrapped in the chosen preconditioning."""
    from explorer.models.networks import build_denoiser as build

    channels, res, _ = shape
    full = {"class": "SongUNet", "img_resolution": res, "in_channels": channels, "out_channels": channels,
            "label_dim": label_dim, **arch}
    if label_dim:
        full["label_dropout"] = label_dropout
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
        label_dim = self._label_dim() if config.cond else 0
        self.net = build_denoiser(config.precond, config.arch, self.data.shape, label_dim=label_dim, name=config.name,
                                  label_dropout=config.label_dropout).to(self.device).train()
        self.channels_last = config.channels_last and (self.device.type == "cuda" or config.fast)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.ema = EMA(self.net, config.ema_halflife_kimg * 1000, config.ema_rampup)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8,
                                    fused=self.device.type == "cuda")
        self.loss_fn = make_loss(config.precond)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.stream = BatchStream(self.data, config.batch, self.device, self.generator, uint8=config.fast,
                                  labels=config.cond)
        self.progress = Progress()
        self._pending: list[torch.Tensor] = []
        self.forward: torch.nn.Module = self.net
        self._compile_checked = not config.compile
        self.clean_grads: Callable[[list[torch.Tensor], float], None] = clean_and_clip
        if config.compile:
            self.forward = torch.compile(self.net)
            self.clean_grads = torch.compile(clean_and_clip)  # ~250 small kernels fused into a few

    def _label_dim(self) -> int:
        if self.data.labels is None:
            raise ValueError(f"--cond needs a labelled data set; {self.data.name!r} has no labels.")
        return max(len(self.data.class_names), int(self.data.labels.max()) + 1)

    # ------------------------------------------------------------------ files
    def log(self, line: str) -> None:
        self._print(line)
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def save_state(self) -> list[Path]:
        """Write the whole training state as ``state/*.safetensors`` pieces of at most 16 MB.

        The data order is the generator's state (batches are drawn from it), so network, EMA,
        Adam's moments and step counts, the three RNG states and the counters are all there is.
        """
        opt = self.opt.state_dict()
        moments = {role: {str(i): s[key] for i, s in opt["state"].items()}
                   for role, key in (("adam-m", "exp_avg"), ("adam-v", "exp_avg_sq"))}
        misc = {f"step/{i}": s["step"].reshape(1).float() for i, s in opt["state"].items()}
        misc["generator"] = self.generator.get_state()
        misc["torch_rng"] = torch.get_rng_state()
        if self.device.type == "cuda":
            misc["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        info = {"progress": dataclasses.asdict(self.progress), "config": dataclasses.asdict(self.config),
                "param_groups": opt["param_groups"]}
        groups = {"net": self.net.state_dict(), "ema": self.ema.state_dict(), **moments, "misc": misc}
        return write_state(self.out, groups, info)

    def load_state(self) -> None:
        groups, info = read_state(self.out)
        self.net.load_state_dict(groups["net"])
        self.ema.load_state_dict(groups["ema"])
        misc = groups["misc"]
        steps = sorted(int(k.split("/")[1]) for k in misc if k.startswith("step/"))
        state = {i: {"step": misc[f"step/{i}"].reshape(()), "exp_avg": groups["adam-m"][str(i)],
                     "exp_avg_sq": groups["adam-v"][str(i)]} for i in steps}
        self.opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
        self.generator.set_state(misc["generator"])
        torch.set_rng_state(misc["torch_rng"])
        if "cuda_rng" in misc and self.device.type == "cuda":
            torch.cuda.set_rng_state(misc["cuda_rng"], self.device)
        self.progress = Progress(**info["progress"])

    # ------------------------------------------------------------------ steps
    def step(self) -> torch.Tensor:
        """One optimizer step on a fresh batch; returns the batch's mean loss (on the device, no sync).

        The first compiled step is watched: if ``torch.compile`` cannot build the graph, the
        run says so and goes on eagerly instead of dying at the start of a GPU session.
        """
        if self._compile_checked:
            return self._step()
        try:
            loss = self._step()
        except Exception as err:  # noqa: BLE001 - any compiler failure means: train eagerly
            self.log(f"torch.compile failed ({type(err).__name__}: {str(err)[:200]}); training without it")
            self.forward, self.clean_grads = self.net, clean_and_clip
            self.opt.zero_grad(set_to_none=True)
            loss = self._step()
        self._compile_checked = True
        return loss

    def _step(self) -> torch.Tensor:
        cfg = self.config
        images, labels = self.stream.draw()
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        use_bf16 = cfg.bf16 and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = self.loss_fn(self.forward, images, labels, self.generator).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, self.progress.nimg)
        self.clean_grads([p.grad for p in self.net.parameters() if p.grad is not None], cfg.grad_clip)
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
        if resume and has_state(self.out):
            self.load_state()
            self.log(f"resumed at step {self.progress.step}, {self.progress.nimg / 1000:.1f} kimg")
        elif has_state(self.out):
            raise ValueError(f"{self.out} already holds a training run; pass --resume to continue it or choose another --out.")
        (self.out / CONFIG_FILE).write_text(self.config.to_json())
        self.progress.sessions += 1
        self.log(f"device {self._device_name()}, {count_parameters(self.net.model) / 1e6:.2f} M parameters, "
                 f"data {self.data.name} {tuple(self.data.images.shape)}, seed {self.config.seed}, batch {self.config.batch}, "
                 f"fast {self.config.fast}, compile {self.config.compile}, cond {self.config.cond}")
        stop = self._train(deadline, max_steps)
        self._fold_losses()
        self.progress.finished = self._budget_reached()
        self.save_state()
        self._grid(self.out / f"grid-{self.progress.nimg // 1000:06d}kimg.png")
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
            if len(self._pending) >= cfg.log_every_steps:
                self._fold_losses()  # also bounds how far the CPU runs ahead of the GPU
            if steps_here > 20:
                step_seconds = (time.time() - window_t0) / max(window_img / cfg.batch, 1)
            if cfg.early_minutes is not None and p.early_kimg is None and p.train_seconds >= cfg.early_minutes * 60:
                p.early_kimg = p.nimg / 1000
                self.log(f"early snapshot {self.export(early=True).name} at {p.early_kimg:.1f} kimg")
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
                self._grid(self.out / f"grid-{p.nimg // 1000:06d}kimg.png")

    def _grid(self, path: Path) -> None:
        """A sample grid, if asked for; a failure there (a missing package) must not cost the run."""
        if self.grid_fn is None:
            return
        try:
            self.grid_fn(self, path)
        except Exception as err:  # noqa: BLE001 - pictures are optional, checkpoints are not
            self.log(f"sample grid {path.name} failed: {type(err).__name__}: {err}")

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

    def export(self, early: bool = False) -> Path:
        """Write the EMA denoiser as ``RUN_DIR/<name>.safetensors`` (``<name>-early`` for the
        autoguidance snapshot) with the training record."""
        from explorer.models.checkpoint import save_checkpoint

        cfg, p = self.config, self.progress
        path = self.out / f"{cfg.name}{'-early' if early else ''}.safetensors"
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
            "conditional": cfg.cond,
            "label_dropout": cfg.label_dropout,
            "snapshot": "early" if early else "final",
        }
        save_checkpoint(path, ema, dataset=self.data.name, train=train_info)
        return path


def clean_and_clip(grads: list[torch.Tensor], max_norm: float) -> None:
    """Zero non-finite gradient entries (a rare one must not poison the weights), then clip the
    total norm to ``max_norm`` (0: no clipping), with the arithmetic of ``clip_grad_norm_``."""
    for g in grads:
        torch.nan_to_num_(g, nan=0.0, posinf=0.0, neginf=0.0)
    if max_norm > 0 and grads:
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
