"""``diffusion-explorer grid``: write a σ grid file for ``--sigmas``.

From a published table (``--ays SD1|SDXL|SVD``), optimized for a model and solver
(``--optimize``: dynamic programming against one RK45 reference trajectory), or the grid a
run configuration produces (default). ``.json`` files keep the source and, for optimized
grids, the step costs; ``.npy`` files hold the σ's alone.
"""
from __future__ import annotations

import argparse
import sys

from explorer.commands.common import (
    add_model_argument,
    add_run_arguments,
    config_from_args,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="write a σ grid file (AYS table, optimized steps, or a config's grid)",
                       description=__doc__)
    add_model_argument(p)
    add_run_arguments(p)
    p.add_argument("--ays", metavar="MODEL", help="Align Your Steps table: SD1, SDXL or SVD")
    p.add_argument("--optimize", action="store_true", help="optimize the --steps steps of --solver for --model")
    p.add_argument("--candidates", type=int, default=48, help="fine candidate σ's of the optimizer (default 48)")
    p.add_argument("--samples", type=int, default=256, help="reference samples of the optimizer (default 256)")
    p.add_argument("--out", required=True, metavar="GRID.json", help="grid file (.json or .npy)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from explorer.core.grids import save_grid

    config = config_from_args(args)
    steps = config.steps or 18
    if args.ays and args.optimize:
        raise ValueError("Give --ays or --optimize, not both.")
    if config.sigmas is not None:  # --preset, --sigmas or --timesteps: that grid, with the run settings it needs
        grid = preset_grid(args, config)
    elif args.ays:
        from explorer.core.schedulers.ays import ays_grid

        grid = ays_grid(args.ays, steps, final_zero=config.final == "zero")
    else:
        from explorer.models.loader import load_denoiser

        denoiser = load_denoiser(args.model)
        if args.optimize:
            from explorer.core.optimize_steps import optimize_steps

            result = optimize_steps(denoiser, config, steps, args.candidates, args.samples,
                                    progress=lambda m: print(m, file=sys.stderr))
            grid = result.grid
            print(f"summed step error: optimized {result.cost:.4e}, default {result.default_cost:.4e}; "
                  f"run's RMS error at σ_min: optimized {result.rmse:.4e}, default {result.default_rmse:.4e}", file=sys.stderr)
        else:
            from explorer.core.optimize_steps import default_grid

            grid = default_grid(denoiser, config)
    save_grid(args.out, grid)
    print(" ".join(f"{s:.6g}" for s in grid.sigmas))
    print(f"{grid.source}: {grid.steps} steps, saved {args.out}", file=sys.stderr)
    return 0


RUN_FIELDS = ("process", "sigma_schedule", "scaling", "solver", "init_sigma", "orders")


def preset_grid(args: argparse.Namespace, config):
    """The config's explicit grid as a file that also restores the preset's run settings and notes."""
    from explorer.core.grids import Grid

    notes: list[str] = []
    if getattr(args, "preset", None):
        from pathlib import Path

        from explorer.core.schedulers import apply_preset

        _, notes = apply_preset(args.preset, args.scheduler_config or Path(args.model), config.steps, config)
    run = {name: getattr(config, name) for name in RUN_FIELDS}
    run["orders"] = list(run["orders"]) if run["orders"] is not None else None
    return Grid(config.sigmas, config.timesteps, config.schedule_label or "", info={"run": run, "notes": notes})
