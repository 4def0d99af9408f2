"""Arguments shared by the subcommands that run the sampler (SPEC §7)."""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from types import SimpleNamespace
from typing import Any, Optional

from explorer.core.choices import DISCRETIZATIONS, FINALS, PROCESSES, SCALINGS, SCHEDULES
from explorer.core.config import MAX_SEED, RunConfig
from explorer.core.solvers import all_options, declared_by, get_solver

# The field defaults, read without building (and validating) a RunConfig at import time.
_DEFAULTS = SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(RunConfig)})


def add_model_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--model", default="default", required=required,
        help="built-in name (e.g. ring, moons, gaussian, fashion32-edm), FILE.json (mixture), FILE.safetensors, FILE.pkl, "
        "FILE.npy/.npz (ideal denoiser of an array) or a diffusers folder (default: the app's default denoiser)",
    )


def add_run_arguments(parser: argparse.ArgumentParser, with_steps: bool = True) -> None:
    """The run-configuration options: process, schedule, solver, steps, churn, seed, dtype…"""
    g = parser.add_argument_group("process and time steps")
    g.add_argument("--process", choices=list(PROCESSES), default=_DEFAULTS.process)
    g.add_argument("--sigma-schedule", choices=SCHEDULES, help="σ(t) apart from the process (advanced)")
    g.add_argument("--scaling", choices=SCALINGS, help="s(t) apart from the process (advanced)")
    g.add_argument("--disc", choices=DISCRETIZATIONS, default=_DEFAULTS.disc, help="time-step discretization")
    g.add_argument("--rho", type=float, default=_DEFAULTS.rho, help="ρ of the edm discretization (default 7)")
    g.add_argument("--sigma-min", type=float)
    g.add_argument("--sigma-max", type=float)
    g.add_argument("--epsilon-s", type=float, default=_DEFAULTS.epsilon_s, help="VP's smallest t (default 1e-3)")
    add_grid_arguments(parser)
    s = parser.add_argument_group("solver")
    s.add_argument("--solver", default=_DEFAULTS.solver, help="see `diffusion-explorer solvers` (default heun)")
    if with_steps:
        steps = s.add_mutually_exclusive_group()
        steps.add_argument("--steps", type=int, help="solver steps N (default 18)")
        steps.add_argument("--nfe", type=int, help="an NFE budget: the largest N that fits is used")
    s.add_argument("--final", choices=FINALS, default=_DEFAULTS.final, help="last step: to σ=0 (zero), stop at σ_min, or denoise")
    s.add_argument("--no-lower-order-final", action="store_true", help="keep full order in the last multistep steps")
    add_option_arguments(parser)
    r = parser.add_argument_group("noise, precision, device")
    r.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="sample k uses seed + k")
    r.add_argument("--batch", type=int, default=_DEFAULTS.batch)
    r.add_argument("--label", type=int, help="class for class-conditional denoisers")
    r.add_argument("--dtype", choices=["float32", "float64"], default=_DEFAULTS.dtype)
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default=_DEFAULTS.device)
    r.add_argument("--no-fast", action="store_true", help="turn off the CUDA fast path (graph-replayed D, streamed steps)")
    add_guidance_arguments(parser)


def add_guidance_arguments(parser: argparse.ArgumentParser) -> None:
    """--guidance W and --guide MODEL (explorer.core.guidance); they apply to every solver."""
    g = parser.add_argument_group("guidance (every solver; NFE counts guided evaluations, each 2 network calls)")
    g.add_argument("--guidance", type=float, default=_DEFAULTS.guidance, metavar="W",
                   help="guidance scale w: D_guide + w (D - D_guide); 1 = none (default), 0 = the unconditional "
                   "model under classifier-free guidance")
    g.add_argument("--guide", metavar="MODEL", default=None,
                   help="autoguidance: the weaker model as guide (e.g. fashion32-edm-guide or a file); "
                   "without it, w != 1 is classifier-free guidance (needs --label and a conditional model)")


OPTION_DEST = "option__"  # argparse destination prefix of the solvers' own options


def add_option_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per option any registered solver declares (``--churn``, ``--alpha``…), built
    from the declarations; a flag given for a solver without that option is an error."""
    g = parser.add_argument_group("solver options (each applies to the solvers named)")
    for name, opt in all_options().items():
        extra = f"; {opt.bounds_text()}" if opt.kind is not float or opt.low is not None or opt.high is not None else ""
        g.add_argument(opt.flag, dest=OPTION_DEST + name, metavar=opt.metavar, default=None,
                       help=f"{opt.help}{extra} ({_defaults_by_solver(name)})")


def options_from_args(args: argparse.Namespace, solver: str) -> dict[str, Any]:
    """The option flags given on the command line, parsed by ``solver``'s declarations
    (a flag it does not declare is passed on as text, for RunConfig to name the solvers that have it)."""
    info = get_solver(solver)
    given = {k[len(OPTION_DEST):]: v for k, v in vars(args).items() if k.startswith(OPTION_DEST) and v is not None}
    return {name: info.option(name).parse(text) if name in info.option_names else text for name, text in given.items()}


def _defaults_by_solver(name: str) -> str:
    """'euler, heun: default 0' — grouped, since solvers sharing a name may differ in default."""
    groups: dict[str, list[str]] = {}
    for solver in declared_by()[name]:
        default = get_solver(solver).option(name).default
        groups.setdefault("solver's choice" if default is None else _shown(default), []).append(solver)
    return "; ".join(f"{', '.join(names)}: default {d}" for d, names in groups.items())


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> RunConfig:
    """A validated RunConfig from parsed arguments (ValueError on nonsense)."""
    steps = getattr(args, "steps", None)
    nfe = getattr(args, "nfe", None)
    if steps is None and nfe is None:
        steps = _DEFAULTS.steps
    fields = dict(
        process=args.process, sigma_schedule=args.sigma_schedule, scaling=args.scaling, disc=args.disc,
        rho=args.rho, sigma_min=args.sigma_min, sigma_max=args.sigma_max, solver=args.solver, steps=steps,
        nfe=nfe, final=args.final, lower_order_final=not args.no_lower_order_final,
        seed=args.seed, batch=args.batch, label=args.label,
        dtype=args.dtype, device=args.device, epsilon_s=args.epsilon_s, fast=not getattr(args, "no_fast", False),
        guidance=getattr(args, "guidance", _DEFAULTS.guidance), guide=getattr(args, "guide", None),
    )
    fields.update(overrides)
    fields.setdefault("options", options_from_args(args, fields["solver"]))
    return with_grid_args(RunConfig(**fields), args)


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """Explicit grids and presets (issue #12): they replace --disc/--steps when given."""
    g = parser.add_argument_group("explicit grids and presets")
    g.add_argument("--sigmas", metavar="FILE", help="the σ grid itself: .json list/object or .npy (replaces --disc, --steps)")
    g.add_argument("--timesteps", metavar="LIST|FILE", help="network timesteps (discrete models), e.g. 999,749,499,249 or "
                   "a .json list; σ's follow from the model's table, linear in t, then 0")
    g.add_argument("--shift", type=float, default=_DEFAULTS.shift, help="σ → shift·σ on the grid (SD3/FLUX shift)")
    g.add_argument("--preset", choices=["diffusers"], help="reproduce another library's sampler loop")
    g.add_argument("--scheduler-config", metavar="FILE", help="scheduler_config.json for --preset diffusers "
                   "(default: the one in the --model folder)")


def with_grid_args(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """``config`` with the grid of --preset, --sigmas or --timesteps (notes printed to stderr)."""
    from pathlib import Path

    from explorer.core.grids import grid_config_fields, grid_from_timesteps, load_grid, parse_timesteps

    preset, sigmas, timesteps = (getattr(args, k, None) for k in ("preset", "sigmas", "timesteps"))
    if getattr(args, "shift", None) not in (None, config.shift):
        config = config.replace(shift=args.shift)
    if sum(x is not None for x in (preset, sigmas, timesteps)) > 1:
        raise ValueError("Give only one of --preset, --sigmas and --timesteps.")
    if preset is not None:
        from explorer.core.schedulers import apply_preset

        source = args.scheduler_config or Path(getattr(args, "model", ""))
        if not args.scheduler_config and not Path(source).is_dir():
            raise ValueError("--preset diffusers needs --scheduler-config FILE (or a diffusers folder as --model).")
        config, notes = apply_preset(preset, source, config.steps or _DEFAULTS.steps, config)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        return config
    if sigmas is not None:
        return config.replace(**grid_config_fields(load_grid(sigmas)))
    if timesteps is not None:
        from explorer.models.loader import load_denoiser

        grid = grid_from_timesteps(load_denoiser(args.model), parse_timesteps(timesteps))
        return config.replace(sigmas=grid.sigmas, timesteps=grid.timesteps, schedule_label=grid.source)
    return config


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: Optional[int], label: str = "", stream: Any = None) -> None:
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()

    def update(self, step: int, nfe: int, sigma: float) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.total:
            width = 30
            filled = int(width * min(step, self.total) / self.total)
            bar = "█" * filled + "·" * (width - filled)
            head = f"{bar} {step}/{self.total}"
        else:
            head = f"step {step}"
        self.stream.write(f"\r{self.label} {head}  NFE {nfe}  σ={sigma:.4g}  {elapsed:.1f}s ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


MAX_SEEDS = 10_000_000  # samples one generate call may ask for (ten million images is a week of GPU time)


def parse_seeds(text: str) -> list[int]:
    """'0-49', '1,5,9' or '3' → a list of seeds; its size is checked before it is built."""
    ranges: list[tuple[int, int]] = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                ranges.append((int(a), int(b)))
            elif part.strip():
                ranges.append((int(part), int(part)))
    except ValueError:
        raise ValueError(f"Seeds must look like 0-49 or 1,5,9 (got {text!r}).") from None
    if not ranges or min(a for a, _ in ranges) < 0:
        raise ValueError(f"Seeds must be non-negative integers (got {text!r}).")
    if max(b for _, b in ranges) > MAX_SEED:
        raise ValueError(f"Seeds must be at most 2⁶³ − 1 (got {text!r}).")
    count = sum(max(0, b - a + 1) for a, b in ranges)
    if count > MAX_SEEDS:
        raise ValueError(f"{count} seeds is more than the {MAX_SEEDS} one call may draw; split the range.")
    seeds = [s for a, b in ranges for s in range(a, b + 1)]
    if not seeds:
        raise ValueError(f"The seed range {text!r} is empty.")
    return seeds


def finite_or_none(value: float) -> Optional[float]:
    return value if value is not None and math.isfinite(value) else None
