"""``diffusion-explorer train``: train (or continue training) a denoiser on an image set."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from explorer.train.loop import CONFIG_FILE, DEFAULT_ARCH, TrainConfig


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a denoiser (EDM, VP or VE loss) on Fashion-MNIST, emoji or your own images",
        description="Train a SongUNet denoiser. A run folder can be resumed across sessions with --resume.",
    )
    p.add_argument("--data", default="fashion", help="fashion, emoji, a folder of images, or a .npy/.npz array")
    p.add_argument("--data-dir", help="where the Fashion-MNIST idx files or the emoji cache are")
    p.add_argument("--precond", choices=["edm", "vp", "ve"], default="edm", help="preconditioning and loss")
    p.add_argument("--arch-channels", type=int, default=DEFAULT_ARCH["model_channels"], help="UNet base channels")
    p.add_argument("--arch-mult", type=_ints, default=DEFAULT_ARCH["channel_mult"], help="channel multipliers, e.g. 1,2,2")
    p.add_argument("--arch-blocks", type=int, default=DEFAULT_ARCH["num_blocks"], help="residual blocks per resolution")
    p.add_argument("--arch-attn", type=_ints, default=DEFAULT_ARCH["attn_resolutions"], help="resolutions with attention, e.g. 16")
    p.add_argument("--arch-dropout", type=float, default=DEFAULT_ARCH["dropout"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-rampup-kimg", type=float, default=100.0)
    p.add_argument("--kimg", type=float, default=None, help="training length in thousands of images (default 1000)")
    p.add_argument("--minutes", type=float, default=None, help="training-time budget over all sessions")
    p.add_argument("--ema-halflife-kimg", type=float, default=500.0)
    p.add_argument("--grid-every-kimg", type=float, default=500.0, help="draw a sample grid this often")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None, help="file name of the exported checkpoint (default: the run folder's name)")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 on CUDA too")
    p.add_argument("--fast", action="store_true",
                   help="GPU pace: uint8 data on the device, channels-last, losses read back every --log-every-steps")
    p.add_argument("--compile", action="store_true", help="run the denoiser through torch.compile (eager if it fails)")
    p.add_argument("--log-every-steps", type=int, default=50, help="read losses back from the device this often")
    p.add_argument("--cond", action="store_true", help="class-conditional model (the data set's labels, one-hot)")
    p.add_argument("--label-dropout", type=float, default=0.0,
                   help="probability of training on the null label (classifier-free guidance), with --cond")
    p.add_argument("--early-minutes", type=float, default=None,
                   help="also export the EMA after this much training as <name>-early.safetensors (autoguidance)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, help="run folder (state, logs, grids, exported checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (its config.json wins)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop cleanly, saving state, before this many seconds of wall clock")
    p.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A fresh run's configuration, or the saved one of a resumed run (budgets may be extended)."""
    out = Path(args.out)
    if args.resume and (out / CONFIG_FILE).is_file():
        saved = json.loads((out / CONFIG_FILE).read_text())
        if args.kimg is not None:
            saved["kimg"] = args.kimg
        if args.minutes is not None:
            saved["minutes"] = args.minutes
        return TrainConfig(**saved)
    arch = dict(DEFAULT_ARCH)
    arch.update(model_channels=args.arch_channels, channel_mult=args.arch_mult, num_blocks=args.arch_blocks,
                attn_resolutions=args.arch_attn, dropout=args.arch_dropout)
    return TrainConfig(
        data=args.data, data_dir=args.data_dir, precond=args.precond, arch=arch, batch=args.batch, lr=args.lr,
        lr_rampup_kimg=args.lr_rampup_kimg, kimg=args.kimg if args.kimg is not None else 1000.0,
        minutes=args.minutes, ema_halflife_kimg=args.ema_halflife_kimg, grid_every_kimg=args.grid_every_kimg,
        seed=args.seed, bf16=not args.no_bf16, name=args.name or out.resolve().name, fast=args.fast,
        compile=args.compile, log_every_steps=args.log_every_steps, cond=args.cond, label_dropout=args.label_dropout,
        early_minutes=args.early_minutes,
    )


def run(args: argparse.Namespace) -> int:
    deadline = time.time() + args.time_limit if args.time_limit is not None else None
    from explorer.train.loop import Trainer

    try:
        from explorer.train.preview import save_sample_grid
    except ImportError as err:  # a bare GPU machine may lack the sampler's or PNG writer's packages
        print(f"no sample grids: {err}")
        save_sample_grid = None
    config = config_from_args(args)
    trainer = Trainer(config, Path(args.out), device=args.device, grid_fn=save_sample_grid)
    trainer.run(deadline=deadline, resume=args.resume, max_steps=args.max_steps)
    return 0


def main(argv=None) -> int:
    """Run ``train`` without the rest of the CLI (used by the GPU training script)."""
    parser = argparse.ArgumentParser(prog="diffusion-explorer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except ValueError as err:
        print(f"diffusion-explorer train: error: {err}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
