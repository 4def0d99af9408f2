"""``diffusion-explorer solvers``: every solver with its order, NFE rule and options."""
from __future__ import annotations

import argparse

from explorer.core.solvers import SOLVERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("solvers", help="list the solvers with order and NFE rule", description=__doc__)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"{'solver':<22} {'order':>5}  {'NFE for N steps':<36} description")
    for info in SOLVERS.values():
        print(f"{info.name:<22} {info.order:>5}  {info.nfe_rule:<36} {info.summary}")
        if info.options:
            shown = ", ".join(f"{o.flag} {'auto' if o.default is None else o.default}" for o in info.options)
            print(f"{'':<22} {'':>5}  options: {shown}")
    return 0
