"""``diffusion-explorer export``: pictures, animations and plots from a saved run or comparison.

Give a trajectory file (``sample --out``) for its sample grid, film strip, animation
and plots, or a saved comparison (``comparison.safetensors``) for every export of the
comparison, without running anything again.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # the module imports torch; `--help` should not wait for it
    from explorer.export.options import ExportOptions

# --only names → the ExportOptions switches they keep on
PARTS = {
    "samples": "sample_grid", "comparison": "comparison_grid", "difference": "difference_grid",
    "strip": "film_strip", "gif": "animation", "mp4": "mp4", "trajectories": "trajectories", "plots": "plots",
}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that shape the exported pictures (shared with ``compare``); unset ones keep the file's or default values."""
    g = parser.add_argument_group("exports")
    g.add_argument("--only", metavar="LIST", help=f"comma-separated subset of: {', '.join(PARTS)}")
    g.add_argument("--columns", type=int, dest="grid_columns", metavar="N", help="columns of each sample grid (default: near square)")
    g.add_argument("--every", type=int, dest="strip_every", metavar="K", help="film strip: every k-th step (default: about 8 frames)")
    g.add_argument("--strip-space", choices=["x0", "xt"], help="film strip shows the denoised x0 (default) or the noisy xt")
    g.add_argument("--animation-space", choices=["x0", "xt"], help="animation shows x0 (default) or xt")
    g.add_argument("--animation-sync", choices=["sigma", "step"], help="comparison animation frames follow σ (default) or the step index")
    g.add_argument("--fps", type=float, help="animation frames per second (default 6)")
    g.add_argument("--pad", type=int, metavar="PX", help="pixels between grid cells (default 2)")
    g.add_argument("--no-labels", action="store_true", help="no solver, step or seed captions")
    g.add_argument("--scale", type=int, metavar="N", help="enlarge image cells by this factor (nearest neighbour)")
    g.add_argument("--rows", type=int, dest="max_rows", metavar="N", help="samples shown in comparison grids and animations (0 = all)")
    g.add_argument("--downscale", action="store_true", help="shrink grids too large for one image instead of refusing them")


def options_from_args(args: argparse.Namespace, base: Optional[ExportOptions] = None) -> ExportOptions:
    """``base`` (a comparison file's options, or the defaults) with the options given on the command line."""
    changes = {k: getattr(args, k) for k in ("grid_columns", "strip_every", "strip_space", "animation_space", "animation_sync", "fps", "pad", "scale", "max_rows")
               if getattr(args, k, None) is not None}
    if getattr(args, "no_labels", False):
        changes["labels"] = False
    if getattr(args, "downscale", False):
        changes["downscale"] = True
    if getattr(args, "only", None):
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in PARTS]
        if unknown:
            raise ValueError(f"Unknown export(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}.")
        changes.update({field: name in wanted for name, field in PARTS.items()})
    from explorer.export.options import ExportOptions

    return dataclasses.replace(base or ExportOptions(), **changes)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="grids, film strips, animations and plots from a saved run or comparison", description=__doc__)
    p.add_argument("file", metavar="FILE", help="a trajectory file (.safetensors/.npz) or a saved comparison.safetensors")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the exports (created if needed)")
    p.add_argument("--range", metavar="LO,HI", help="data range for image levels, e.g. --range=-1,1 (default: the one the file records, else -1,1)")
    add_export_arguments(p)
    p.set_defaults(func=run)


def parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--range must look like -1,1 (got {text!r}).") from None
    if not lo < hi:
        raise ValueError(f"--range needs LO < HI (got {text!r}).")
    return lo, hi


def stored_range(stored: Optional[tuple[float, float]], path: Path) -> tuple[float, float]:
    """The data range the file records; [−1, 1] with a note for files written before it was recorded.

    Never opens the model a file names: a file from a stranger must not make us open another file.
    """
    if stored is not None:
        return stored
    print(f"note: {path.name} does not record its data range (an older file); image levels assume data in "
          "[-1, 1] (see --range)", file=sys.stderr)
    return (-1.0, 1.0)


def run(args: argparse.Namespace) -> int:
    from explorer.core.trajectory import Trajectory
    from explorer.export.bundle import BUNDLE_FORMAT, load_bundle
    from explorer.export.comparison import export_comparison, export_run

    path = Path(args.file)
    if not path.is_file():
        raise ValueError(f"{str(path)!r} does not exist.")
    options = options_from_args(args)
    given = parse_range(args.range) if args.range else None
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    if _format(path) == BUNDLE_FORMAT:
        result = load_bundle(path)
        data_range = given or stored_range(result.finished()[0].trajectory.data_range, path)
        report = export_comparison(result, args.out, data_range, options, log)
    else:
        traj = Trajectory.load(path)
        data_range = given or stored_range(traj.data_range, path)
        report = export_run(traj, args.out, data_range, options, path.stem, log=log)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _format(path: Path) -> str:
    if path.suffix.lower() != ".safetensors":
        return ""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format", "")
    except Exception:  # not a safetensors file: Trajectory.load explains
        return ""
