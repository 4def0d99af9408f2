"""``diffusion-explorer compare``: several solvers from the very same latents, headless.

Either reproduce a comparison file written by the app (``--config comparison.json``)
or describe one here (``--model ring --solvers heun,euler,dpm-solver++2m --steps 10``,
every other run option shared by the columns). Prints the error table against the
reference run and writes the grids, animations, trajectories, plots and the
comparison file itself into ``--out``; running that file again rewrites identical files.
"""
from __future__ import annotations

import argparse
import sys

from explorer.commands.common import Progress, add_model_argument, add_run_arguments, config_from_args
from explorer.commands.export import add_export_arguments, options_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="run several solvers from the same latents and export the comparison", description=__doc__)
    p.add_argument("--config", metavar="FILE.json", help="a comparison file (from the app or an earlier compare --out)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for everything written (created if needed)")
    p.add_argument("--solvers", metavar="LIST", help="without --config: one column per solver, e.g. heun,euler,dpm-solver++2m")
    p.add_argument("--no-reference", action="store_true", help="skip the high-accuracy reference run (no errors then)")
    p.add_argument("--reference-rtol", type=float, help="tolerance of the reference solver (default 1e-8)")
    add_model_argument(p)
    add_run_arguments(p)
    add_export_arguments(p)
    p.set_defaults(func=run)


def _comparison(args: argparse.Namespace):
    from explorer.core.compare import Comparison
    from explorer.core.sweep import parse_list
    from explorer.export.options import ExportOptions, read_document

    if args.config:
        if args.solvers:
            raise ValueError("Give either --config or --solvers, not both.")
        comparison, options = read_document(args.config)
    else:
        if not args.solvers:
            raise ValueError("Give a comparison file (--config FILE) or the solvers to compare (--solvers a,b,c).")
        base = config_from_args(args)
        columns = tuple(base.replace(solver=name) for name in parse_list(args.solvers, "solver"))
        comparison, options = Comparison(args.model, columns, seed=base.seed, batch=base.batch), ExportOptions()
    changes = {}
    if args.no_reference:
        changes["reference"] = False
    if args.reference_rtol is not None:
        changes["reference_rtol"] = float(args.reference_rtol)
    if changes:
        comparison = Comparison.from_dict({**comparison.to_dict(), **changes})
    return comparison, options_from_args(args, options)


def run(args: argparse.Namespace) -> int:
    from explorer.core.compare import ComparisonResult, absorb, comparison_events, format_table, shared_noise
    from explorer.export.comparison import export_comparison
    from explorer.export.files import output_dir
    from explorer.models.loader import load_denoiser

    comparison, options = _comparison(args)
    out = output_dir(args.out)
    denoiser = load_denoiser(comparison.model)
    result = ComparisonResult(comparison, shared_noise(denoiser, comparison.seed, comparison.batch))
    progress, current = None, None
    try:
        for item in comparison_events(denoiser, comparison):
            if item.column != current:
                if progress is not None:
                    progress.close()
                name = "reference" if item.is_reference else f"{item.column + 1}/{len(comparison.columns)} {comparison.columns[item.column].solver}"
                progress, current = Progress(item.event.total_steps if item.event else None, name), item.column
            if item.event is not None:
                progress.update(item.event.index, item.event.nfe, item.event.sigma)
            absorb(result, item)
    finally:
        if progress is not None:
            progress.close()
    print(format_table(result.table()))
    if result.reference is not None:
        ref = result.reference.trajectory
        print(f"reference: RK45 float64, rtol {comparison.reference_rtol:g}, NFE {ref.nfe}, {result.reference.seconds:.2f} s")
    report = export_comparison(result, out, tuple(float(v) for v in denoiser.data_range), options)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {len(report.paths)} files to {out} (reproduce with: diffusion-explorer compare --config {out / 'comparison.json'} --out DIR)",
          file=sys.stderr)
    return 0
