"""Model cards for the shipped checkpoints: what a denoiser is, how it was made, what it draws.

``python -m explorer.train.cards checkpoints/fashion32-edm.safetensors [--fd 12.3]`` writes
``fashion32-edm.md`` and a 64-sample grid ``fashion32-edm.png`` (Heun, 18 steps = 35 NFE,
seeds 0..63) next to the checkpoint. Everything in the card is read from the checkpoint's
own metadata, so card and file cannot disagree.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Optional

from explorer.core.config import RunConfig
from explorer.core.files import write_text
from explorer.models.checkpoint import load_checkpoint, read_checkpoint_metadata
from explorer.core.sampling import final_samples
from explorer.train import fd_tables
from explorer.train.preview import save_grid

DATA_NOTES = {
    "fashion-mnist-train": (
        "Fashion-MNIST training split (60,000 greyscale 28x28 images of 10 garment classes, padded to 32x32), "
        "from Debian's `dataset-fashion-mnist`.",
        "MIT (Copyright 2017 Zalando SE, https://github.com/zalandoresearch/fashion-mnist).",
    ),
    "noto-color-emoji-32": (
        "Every code point drawn by Noto Color Emoji (1,433 glyphs), rendered with Pillow at the font's "
        "bitmap size, centred on a white square and reduced to 32x32 RGB; horizontal flips as augmentation. "
        "From Debian's `fonts-noto-color-emoji`.",
        "SIL Open Font License 1.1 (Copyright 2013 Google LLC). The rendered images are derived from the font "
        "and are distributed under the same licence.",
    ),
}


def quality_section(path: Path, meta: dict) -> list[str]:
    """The card's measured quality: the FD tables of ``benchmarks/fd_sweep.py`` stored beside the
    checkpoint (``<name>.fd.json``, ``<name>.guidance.json``, put there by its ``publish`` mode),
    or the commands that make them. Only Fashion models: the FD classifier knows Fashion-MNIST."""
    if meta.get("dataset") != "fashion-mnist-train":
        return []
    lines = ["## Quality against NFE, for every solver", ""]
    solvers, guidance = path.with_name(f"{path.stem}.fd.json"), path.with_name(f"{path.stem}.guidance.json")
    if solvers.is_file():
        lines += [fd_tables.render(fd_tables.load(solvers)), f"![FD against NFE]({solvers.with_suffix('.png').name})", ""]
    else:
        lines += ["Not measured yet: `python3 benchmarks/fd_sweep.py solvers --model "
                  f"{path.stem} --dest OUT`, then `python3 benchmarks/fd_sweep.py publish OUT`.", ""]
    if int(meta.get("label_dim") or 0):
        lines += ["## Guidance: FD and classifier accuracy against w", ""]
        if guidance.is_file():
            lines += [fd_tables.render(fd_tables.load(guidance)), f"![guidance]({guidance.with_suffix('.png').name})", ""]
        else:
            lines += ["Not measured yet: `python3 benchmarks/fd_sweep.py guidance --model "
                      f"{path.stem} --dest OUT`, then `python3 benchmarks/fd_sweep.py publish OUT`.", ""]
    return lines


def heun35_fd(path: Path) -> Optional[float]:
    """Heun at 35 NFE from the stored solver table, if measured."""
    table = path.with_name(f"{path.stem}.fd.json")
    if not table.is_file():
        return None
    rows = fd_tables.load(table)["rows"]
    return next((r["fd"] for r in rows if r["solver"] == "heun" and r["nfe"] == 35 and r.get("fd") is not None), None)


def recorded_fd(path: Path) -> Optional[float]:
    """The Heun-35 FD the current card records (kept when a new solver table lacks that point)."""
    card = path.with_suffix(".md")
    if not card.is_file():
        return None
    found = re.search(r"Heun 35 NFE\) \| ([0-9.]+) \|", card.read_text(encoding="utf-8"))
    return float(found.group(1)) if found else None


def card_text(path: Path, meta: dict, params: int, fd: Optional[float]) -> str:
    """The Markdown of one card (``fd``: Heun 35 NFE; default: from the stored solver table, else
    the value the card already records)."""
    fd = fd if fd is not None else heun35_fd(path)
    fd = fd if fd is not None else recorded_fd(path)
    train = meta.get("train", {})
    arch = {k: v for k, v in meta["arch"].items() if k != "class"}
    data, licence = DATA_NOTES.get(meta["dataset"], (meta["dataset"], "see the data set's source"))
    seconds = train.get("gpu_seconds", train.get("train_seconds"))
    label_dim = int(meta.get("label_dim") or 0)
    kind = (f"A class-conditional ({label_dim} classes, one-hot labels; the all-zero label is the unconditional "
            f"model, trained with label dropout {meta['arch'].get('label_dropout', 0)} for classifier-free guidance)"
            if label_dim else "An unconditional")
    images = train.get("images_seen")
    lines = [
        f"# {path.stem}",
        "",
        f"{kind} {meta['precond'].upper()}-preconditioned denoiser D(x; σ) for "
        f"{'x'.join(str(s) for s in meta['shape'][1:])} images with {meta['shape'][0]} channel(s), data range [-1, 1].",
        "",
        "| | |",
        "|---|---|",
        f"| data | {data} |",
        f"| data licence | {licence} |",
        f"| network | {meta['arch']['class']} (DDPM++ layout), {params / 1e6:.2f} M parameters, float32 |",
        f"| settings | `{arch}` |",
        f"| preconditioning | {meta['precond']} {meta.get('precond_kwargs', {})} |",
        f"| loss | {train.get('loss', meta['precond'])} (SPEC §3 \"Training\") |",
        f"| optimizer | Adam, lr {train.get('lr')}, batch {train.get('batch')}, bf16 autocast, EMA half-life "
        f"{train.get('ema_halflife_kimg')} kimg (ramp-up 0.05) |",
        f"| training steps | {train.get('steps')} |",
        f"| images seen | {images:,} ({images / 1e6:.1f} M) |" if images else "| images seen | unknown |",
        f"| training time | {seconds / 60:.1f} min of wall clock on {train.get('device')}"
        f"{f', {images / seconds:,.0f} images/s' if images else ''} (see README.md for the session) |"
        if seconds else "| training time | unknown |",
        f"| final loss | {train.get('final_loss')} (running mean, λ-weighted, per pixel) |",
        f"| seed | {train.get('seed')} |",
    ]
    early = path.with_name(f"{path.stem}-early.safetensors")
    if early.is_file():
        seen = read_checkpoint_metadata(early).get("train", {}).get("images_seen")
        lines.append(f"| autoguidance guide | `{early.name}`: the EMA of this run after {seen:,} images "
                     "(EDM2's weaker model of the same kind) |" if seen else f"| autoguidance guide | `{early.name}` |")
    if fd is not None:
        lines.append(f"| FD (classifier features, 10k samples, Heun 35 NFE) | {fd:.2f} |")
    lines += [
        "",
        f"![64 samples]({path.stem}.png)",
        "",
        "Samples above: seeds 0-63, Heun (EDM Algorithm 1), 18 steps = 35 NFE, process edm with EDM time "
        "steps (ρ = 7, σ 0.002 to 80), the sampler EDM recommends for any preconditioning.",
        "",
        "Made by `benchmarks/train_checkpoints.py` (training log: "
        f"`{path.stem}.log.txt`); this card by `python -m explorer.train.cards`.",
        "",
    ]
    quality = quality_section(path, meta)
    if quality and quality[-1]:
        quality.append("")
    return "\n".join(lines[:-2] + quality + lines[-2:])


def write_card(path: Path, fd: Optional[float] = None, count: int = 64, grid: bool = True) -> Path:
    """Write ``<name>.md`` and (unless ``grid`` is false) ``<name>.png`` next to the checkpoint."""
    path = Path(path)
    meta = read_checkpoint_metadata(path)
    denoiser = load_checkpoint(path)
    if grid:
        config = RunConfig(process="edm", disc="edm", solver="heun", steps=18, seed=0, batch=count, device="cpu")
        save_grid(final_samples(denoiser, config), path.with_suffix(".png"), columns=8)
    params = sum(p.numel() for p in denoiser.parameters())
    return write_text(card_text(path, meta, params, fd), path.with_suffix(".md"))  # atomic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--fd", type=float, default=None, help="measured FD to record (Fashion models)")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--no-grid", action="store_true", help="rewrite the text only, keep the PNG")
    args = parser.parse_args(argv)
    print(write_card(Path(args.checkpoint), args.fd, args.count, grid=not args.no_grid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
