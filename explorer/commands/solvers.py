"""``diffusion-explorer solvers``: every solver with its order, NFE rule and options."""
from __future__ import annotations

import argparse

from explorer.core.solvers import SOLVERS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("solvers", help="list the solvers with order and NFE rule", description=__doc__)
    p.add_argument("--markdown", action="store_true", help="the README's table: solver, expected order, NFE rule, options")
    p.set_defaults(func=run)


def markdown_rows() -> list[str]:
    """One table row per registered solver (the README's solver table is made from these)."""
    rows = ["| solver | expected order | NFE for N steps | options (default) | description |", "|---|---|---|---|---|"]
    for info in SOLVERS.values():
        shown = ", ".join(f"`{o.flag} {'auto' if o.default is None else _plain(o.default)}`" for o in info.options) or "—"
        rows.append(f"| `{info.name}` | {info.order} | {info.nfe_rule} | {shown} | {info.summary} |")
    return rows


def _plain(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "markdown", False):
        print("\n".join(markdown_rows()))
        return 0
    print(f"{'solver':<22} {'order':>5}  {'NFE for N steps':<36} description")
    for info in SOLVERS.values():
        print(f"{info.name:<22} {info.order:>5}  {info.nfe_rule:<36} {info.summary}")
        if info.options:
            shown = ", ".join(f"{o.flag} {'auto' if o.default is None else o.default}" for o in info.options)
            print(f"{'':<22} {'':>5}  options: {shown}")
    return 0
