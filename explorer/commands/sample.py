"""``diffusion-explorer sample``: one run, saved as a trajectory file (and a picture)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from explorer.commands.common import Progress, add_model_argument, add_run_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="run a sampler and save its trajectory", description=__doc__)
    add_model_argument(p)
    add_run_arguments(p)
    p.add_argument("--noise", metavar="FILE", help="latents from .npy or .safetensors (key 'noise') instead of --seed/--batch")
    p.add_argument("--out", required=True, metavar="RUN.safetensors", help="trajectory file (.safetensors or .npz)")
    p.add_argument("--grid", metavar="SAMPLES.png", help="also save the final samples as a picture")
    p.add_argument("--no-evals", action="store_true", help="don't store the inputs of every evaluation (smaller files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from explorer.core.latents import load_noise  # torch: imported only when a run is asked for
    from explorer.core.sampling import make_plan, sample_steps
    from explorer.core.trajectory import TrajectoryRecorder
    from explorer.models.loader import load_denoiser

    out = Path(args.out)
    if out.suffix.lower() not in (".safetensors", ".npz"):
        raise ValueError(f"--out must end in .safetensors or .npz (got {out.name}).")
    if args.grid and Path(args.grid).suffix.lower() != ".png":
        raise ValueError(f"--grid must end in .png (got {args.grid}).")
    config = config_from_args(args)
    denoiser = load_denoiser(args.model)
    noise = load_noise(args.noise, denoiser.shape) if args.noise else None
    if noise is not None:
        config = config.replace(batch=noise.shape[0])
    plan = make_plan(denoiser, config)
    recorder = TrajectoryRecorder(config, args.model, record_evals=not args.no_evals, data_range=denoiser.data_range)
    progress = Progress(plan.n_steps + (config.final == "denoise") if plan.nfe is not None else None, config.solver)
    try:
        for event in sample_steps(denoiser, config, noise, record_evals=not args.no_evals, plan=plan):
            recorder.add(event)
            progress.update(event.index, event.nfe, event.sigma)
    finally:
        progress.close()
    traj = recorder.finish()
    traj.save(out)
    if args.grid:
        from explorer.export.files import save_image
        from explorer.export.grids import sample_grid

        save_image(sample_grid(traj.samples, denoiser.data_range, scale=grid_scale(traj.samples)), args.grid)
    guided = f" (guided, w = {config.guidance:g}: up to 2 network calls per evaluation)" if config.guidance != 1.0 else ""
    print(f"{config.solver}: {traj.num_steps} steps, NFE {traj.nfe}{guided}, saved {out}", file=sys.stderr)
    return 0


GRID_MIN_WIDTH = 512  # px: 16 samples of 32² are otherwise a 138-px thumbnail


def grid_scale(samples, min_width: int = GRID_MIN_WIDTH) -> int:
    """The integer upscale that makes a square-ish grid of image samples at least ``min_width`` wide."""
    if samples.dim() < 3:  # 2-D points: one square panel of PANEL × scale pixels
        from explorer.export.grids import PANEL

        return max(1, math.ceil(min_width / PANEL))
    cols = max(1, math.ceil(math.sqrt(samples.shape[0])))
    return max(1, math.ceil(min_width / (cols * samples.shape[-1])))
