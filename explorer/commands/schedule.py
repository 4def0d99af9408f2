"""``diffusion-explorer schedule``: the time steps a configuration produces, as a table (and plot)."""
from __future__ import annotations

import argparse
import math

from explorer.commands.common import add_model_argument, add_run_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedule", help="print the time steps i, t_i, σ_i, s_i of a configuration", description=__doc__)
    add_model_argument(p)
    add_run_arguments(p)
    p.add_argument("--plot", metavar="FILE.png", help="plot σ(t), s(t) and the steps (PNG or SVG)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from explorer.core.sampling import make_plan  # torch: imported only when a schedule is asked for
    from explorer.models.loader import load_denoiser

    config = config_from_args(args)
    plan = make_plan(load_denoiser(args.model), config)
    proc = plan.process
    lo, hi = plan.sigma_range
    print(f"# process {proc.describe()}, disc {plan.disc}{' (' + config.schedule_label + ')' if config.schedule_label else ''}, σ ∈ [{lo:.6g}, {hi:.6g}], solver {config.solver}, NFE {plan.nfe if plan.nfe is not None else 'adaptive'}")
    print(f"{'i':>4} {'t_i':>14} {'sigma_i':>14} {'s_i':>12} {'lambda_i':>10} {'order':>5}")
    for i, t in enumerate(plan.t):
        sigma = float(proc.sigma(t)) if t > 0 else 0.0
        lam = f"{-math.log(sigma):10.4f}" if sigma > 0 else f"{'inf':>10}"
        order = plan.orders[i] if plan.orders and i < len(plan.orders) else ""
        print(f"{i:>4} {t:14.8g} {sigma:14.8g} {float(proc.s(t)):12.8g} {lam} {order!s:>5}")
    if args.plot:
        from explorer.export.figures import save_plot
        from explorer.export.plots import schedule_figure

        save_plot(schedule_figure(plan, title=f"{config.process} / {config.disc}"), args.plot)
    return 0
