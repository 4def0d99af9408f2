"""The control panel's values and what they make, without Qt.

The panel edits one field at a time, so it holds raw values (a letter typed in σ_min
included) rather than a :class:`RunConfig`. :func:`check` turns a set of values into the
config and plan they make, or the core's sentence saying why they make none; it never
raises, so an impossible combination is state the panel can show, not an exception out
of a slot. :class:`explorer.session.run.RunSession` keeps the values and their check.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.guidance import check_fits
from explorer.core.sampling import make_plan, resolve_device
from explorer.core.solvers import SOLVERS, Option, all_options
from explorer.core.solvers.context import Plan

FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "options")
BUDGET = "use_nfe"  # the panel's extra field: steps (False) or an NFE budget (True)
OPTION_PREFIX = "options."  # the panel's field of a solver option: "options.churn"


def option_field(name: str) -> str:
    return OPTION_PREFIX + name


def active_options(solver: Any) -> tuple[Option, ...]:
    """The options of the chosen solver (none for an unknown name)."""
    info = SOLVERS.get(solver) if isinstance(solver, str) else None
    return info.options if info is not None else ()


@dataclass(frozen=True)
class Invalid:
    """A control's text that is not a value at all (e.g. letters in σ_min)."""

    message: str


@dataclass(frozen=True)
class Checked:
    """The outcome of validating a set of values against a denoiser."""

    config: Optional[RunConfig]
    plan: Optional[Plan]
    nfe: Optional[int]
    error: Optional[str]


def values_of(config: RunConfig) -> dict[str, Any]:
    """The panel's values for a config (the budget mode follows whether nfe is set).

    Every option any solver declares has a value (its default where the config's solver
    lacks it), so that switching solvers in the panel never meets a missing field.
    """
    values = {name: getattr(config, name) for name in FIELDS}
    for name, opt in all_options().items():
        values[option_field(name)] = opt.default
    for opt in active_options(config.solver):
        values[option_field(opt.name)] = config.options.get(opt.name, opt.default)
    values[BUDGET] = config.nfe is not None
    if values["steps"] is None:
        values["steps"] = 18
    if values["nfe"] is None:
        values["nfe"] = 35
    return values


def check(values: dict[str, Any], denoiser: Denoiser) -> Checked:
    """Build the config and plan from panel values; never raises."""
    options = {o.name: values.get(option_field(o.name), o.default) for o in active_options(values.get("solver"))}
    for value in [values[name] for name in FIELDS + (BUDGET,) if name in values] + list(options.values()):
        if isinstance(value, Invalid):
            return Checked(None, None, None, value.message)
    kwargs = {name: values[name] for name in FIELDS}
    kwargs["options"] = options
    if values.get(BUDGET):
        kwargs["steps"] = None
    else:
        kwargs["nfe"] = None
    try:
        config = RunConfig(**kwargs)
        resolve_device(config.device)
        if config.label is not None and denoiser.label_dim and config.label >= denoiser.label_dim:
            raise ValueError(f"Class {config.label} is out of range: the denoiser has {denoiser.label_dim} classes.")
        check_fits(denoiser, config.guidance, config.guide, config.label)
        plan = make_plan(denoiser, config)
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as err:
        return Checked(None, None, None, str(err))
    return Checked(config, plan, plan.nfe, None)
