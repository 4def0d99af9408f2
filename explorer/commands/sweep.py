"""``diffusion-explorer sweep``: final error against NFE for several solvers, with fitted orders.

Each solver runs at each NFE budget from the same latents; the error is the RMSE of
the final samples against the exact PF-ODE solution (Gaussian denoisers) or one run of
the ``reference`` solver (RK45, float64). Writes ``sweep.csv``, ``sweep.png``,
``sweep.svg`` and ``sweep.json`` (the settings) into ``--out``.

Unlike ``sample``, a sweep defaults to ``--final sigma_min`` and ``--dtype float64``:
the last step to σ = 0 is first order for every solver and float32 rounding floors the
error, and either would flatten the slopes this command exists to measure.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from explorer.commands.common import add_model_argument, add_run_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="error against NFE for several solvers (convergence orders)", description=__doc__)
    add_model_argument(p)
    p.add_argument("--solvers", required=True, metavar="LIST", help="e.g. euler,heun,dpm-solver-3,dpm-solver++2m")
    p.add_argument("--nfe", required=True, metavar="LIST", help="NFE budgets, e.g. 5,10,20,50")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for sweep.csv, sweep.png/.svg and sweep.json")
    p.add_argument("--reference-rtol", type=float, help="tolerance of the reference solver (default 1e-8)")
    p.add_argument("--schedules", default="default", metavar="LIST",
                   help="a schedule axis: every solver on each of default, a discretization, rho=R, shift=S, "
                        "ays:MODEL, optimized or a grid file (e.g. default,logsnr,optimized)")
    add_run_arguments(p, with_steps=False)
    p.set_defaults(func=run, final="sigma_min", dtype="float64")


def run(args: argparse.Namespace) -> int:
    from explorer.core.schedule_axis import parse_schedules
    from explorer.core.sweep import parse_budgets, parse_list, sweep_events
    from explorer.export.figures import save_plot, sweep_figure
    from explorer.export.files import output_dir, save_text
    from explorer.export.tables import save_sweep_table
    from explorer.models.loader import load_denoiser

    solvers, budgets = parse_list(args.solvers, "solver"), parse_budgets(args.nfe)
    schedules = parse_schedules(args.schedules)
    base = config_from_args(args, steps=None, nfe=budgets[-1], solver=solvers[0])  # a template: each run sets its own budget
    out = output_dir(args.out)
    denoiser = load_denoiser(args.model)
    result = None
    for item in sweep_events(denoiser, base, solvers, budgets, args.reference_rtol, schedules):
        if item.point is not None:
            p = item.point
            print(f"[{item.done}/{item.total}] {p.solver} NFE {p.nfe}: {p.error:.3e} ({p.seconds:.2f} s)", file=sys.stderr)
        elif item.message:
            print(f"[{item.done}/{item.total}] {item.message}", file=sys.stderr)
        result = item.result or result
    assert result is not None
    for note in result.skipped:
        print(f"note: {note}", file=sys.stderr)
    print(f"# {args.model}: error of the final samples against the {result.reference_kind}; "
          f"process {base.process}, disc {base.disc}, final {base.final}, {base.dtype}, batch {base.batch}, seed {base.seed}")
    print(f"{'solver':<32} {'NFE':>5} {'steps':>5} {'RMSE':>12}")
    for row in result.rows():
        print(f"{row['solver']:<32} {row['nfe']:>5} {row['steps']:>5} {row['error']:>12.4e}")
    for solver, order in result.orders().items():
        print(f"fitted order {solver}: {order:.2f}" if math.isfinite(order) else f"fitted order {solver}: (too few points)")
    save_sweep_table(result.rows(), out / "sweep.csv")
    settings = {"model": args.model, "solvers": solvers, "nfe": budgets, "schedules": schedules, "reference_rtol": args.reference_rtol,
                "config": base.to_dict(), "reference": result.reference_kind}
    save_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", out / "sweep.json")
    for fmt in ("png", "svg"):
        save_plot(sweep_figure(result, title=f"{args.model}: error against NFE"), out / f"sweep.{fmt}")
    print(f"wrote sweep.csv, sweep.png, sweep.svg, sweep.json to {out}", file=sys.stderr)
    return 0
