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

# One line per subcommand: its module (which registers its own parser) and the line that
# `diffusion-explorer --help` shows. Only the module of the command asked for is imported, so
# the help and the light commands answer without importing torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": ("explorer.commands.sample", "run a sampler and save its trajectory"),
    "schedule": ("explorer.commands.schedule", "print the time steps i, t_i, σ_i, s_i of a configuration"),
    "grid": ("explorer.commands.grid", "write a σ grid file (AYS table, optimized steps, or a config's grid)"),
    "solvers": ("explorer.commands.solvers", "list the solvers with order and NFE rule"),
    "convert": ("explorer.commands.convert", "convert an EDM .pkl or a diffusers folder to a .safetensors checkpoint"),
    "compare": ("explorer.commands.compare", "run several solvers from the same latents and export the comparison"),
    "sweep": ("explorer.commands.sweep", "error against NFE for several solvers (convergence orders)"),
    "export": ("explorer.commands.export", "grids, film strips, animations and plots from a saved run or comparison"),
    "train": ("explorer.commands.train", "train a denoiser (EDM, VP or VE loss) on Fashion-MNIST, emoji or your own images"),
    "fd": ("explorer.commands.fd", "Fréchet distance of a model's samples to Fashion-MNIST (classifier features)"),
    "generate": ("explorer.commands.generate", "draw many samples by seed (one device, or sharded under torchrun)"),
    "bench": ("explorer.commands.bench", "time the sampler against its floor and k-diffusion (JSON + markdown)"),
}
COMMAND_MODULES = [module for module, _ in COMMANDS.values()]


def _command_in(argv: Sequence[str]) -> Optional[str]:
    """The subcommand named in argv (its first word that is not an option or --screenshot's value)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--screenshot":
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: Optional[str] = "*") -> argparse.ArgumentParser:
    """The top-level parser; ``command`` names the one subcommand registered in full
    ("*": all of them), the others are listed by their help line alone."""
    parser = argparse.ArgumentParser(
        prog="diffusion-explorer",
        description="See how diffusion models sample. Without a subcommand, opens the app.",
    )
    parser.add_argument("--screenshot", metavar="FILE.png", help="open the window, finish the default run, save a screenshot and exit")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_line) in COMMANDS.items():
        if command in ("*", name):
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def _launch_gui(args: argparse.Namespace) -> int:
    from explorer.ui.app import run_app  # Qt is imported only here

    return run_app(screenshot=args.screenshot)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
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
    except BrokenPipeError:  # `diffusion-explorer solvers | head`: the reader left; nothing to say
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports it


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured in tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
