"""``diffusion-explorer``: the GUI by default, subcommands for headless work.

Each subcommand lives in its own module under :mod:`explorer.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func=callable(args) -> int``.
A user error (``ValueError``, ``FileNotFoundError``) prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

# One line per subcommand module; the module registers its own parser.
COMMAND_MODULES = [
    "explorer.commands.sample",
    "explorer.commands.schedule",
    "explorer.commands.grid",
    "explorer.commands.solvers",
    "explorer.commands.convert",
    "explorer.commands.compare",
    "explorer.commands.sweep",
    "explorer.commands.export",
    "explorer.commands.train",
    "explorer.commands.fd",
    "explorer.commands.generate",
    "explorer.commands.bench",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="diffusion-explorer",
        description="See how diffusion models sample. Without a subcommand, opens the app.",
    )
    parser.add_argument("--screenshot", metavar="FILE.png", help="open the window, finish the default run, save a screenshot and exit")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _launch_gui(args: argparse.Namespace) -> int:
    from explorer.ui.app import run_app  # Qt is imported only here

    return run_app(screenshot=args.screenshot)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from explorer import __version__

        print(__version__)
        return 0
    try:
        if args.command is None:
            return _launch_gui(args)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"diffusion-explorer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffusion-explorer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
