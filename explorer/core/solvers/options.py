"""A solver's own settings, declared once and read by the config, the CLI and the GUI.

Each :class:`Option` carries what every front end needs: its key, type, default,
bounds, a label and one line of help. ``RunConfig.options`` holds the values of the
chosen solver's options (validated against these declarations, defaults filled in);
the CLI makes one ``--flag`` per option name and the control panel one row per option.
A solver with a new setting therefore declares it here or in its own module and
nothing else changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

KINDS = (float, int, bool, str)


@dataclass(frozen=True)
class Option:
    """One setting of a solver.

    Attributes:
        name: key in ``RunConfig.options``; the CLI flag is ``--name`` with ``_`` → ``-``.
        kind: float, int, bool or str (str options take one of ``choices``).
        default: the value when none is given; None only for ``optional`` options.
        help: one line, shown by ``--help`` and as the GUI tooltip.
        label: the short name shown in the GUI and in error messages.
        low, high: bounds (None: unbounded); ``low_open``/``high_open`` exclude the bound.
        choices: the allowed strings of a str option.
        optional: None is allowed and means "the solver's own choice" (said in ``help``).
        allow_inf: a float option may be +∞ (S_max).
    """

    name: str
    kind: type
    default: Any
    help: str
    label: str = ""
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    allow_inf: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"Option {self.name}: kind must be one of float, int, bool, str.")
        if self.kind is str and not self.choices:
            raise TypeError(f"Option {self.name}: a str option needs its choices.")
        if not (self.optional and self.default is None):
            self.validate(self.default)

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def bounds_text(self) -> str:
        """The allowed range in words, for help texts and errors."""
        if self.kind is str:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        lo = "" if self.low is None else f"{self.low:g} {'<' if self.low_open else '≤'} "
        hi = "" if self.high is None else f" {'<' if self.high_open else '≤'} {self.high:g}"
        return f"{lo}{self.title}{hi}" if (lo or hi) else "any number"

    def validate(self, value: Any) -> Any:
        """The value in the option's type, or a ValueError naming the option and its limits."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{self.title} needs a value ({self.bounds_text()}).")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.title} must be true or false (got {value!r}).")
            return value
        if self.kind is str:
            if value not in self.choices:
                raise ValueError(f"Unknown {self.title} {value!r}; choose one of {', '.join(self.choices)}.")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.title} must be a number (got {value!r}).")
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{self.title} must be a whole number (got {value!r}).")
            value = int(value)
        else:
            value = float(value)
            if math.isnan(value) or (math.isinf(value) and not (self.allow_inf and value > 0)):
                raise ValueError(f"{self.title} must be a finite number (got {value!r}).")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            raise ValueError(f"{self.title} must satisfy {self.bounds_text()} (got {value:g}).")
        return value

    def parse(self, text: str) -> Any:
        """A value from command-line text ('none' for an optional option's default)."""
        text = text.strip()
        if self.optional and text.lower() in ("none", "default", ""):
            return None
        if self.kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.title} must be true or false (got {text!r}).")
        if self.kind is str:
            return text
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{self.title} must be a number (got {text!r}).") from None
        return int(number) if self.kind is int and number.is_integer() else number


def join_names(names: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def resolve(
    solver: str, declared: Sequence[Option], given: Mapping[str, Any], declared_by: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Validated values of every declared option: the given ones, defaults for the rest.

    A given name the solver does not declare is an error that says which solvers have it.
    """
    mine = {o.name: o for o in declared}
    for name in given:
        if name not in mine:
            owners = declared_by.get(name)
            if owners:
                raise ValueError(f"{name} applies to {join_names(owners)} only, not to {solver}.")
            raise ValueError(f"{solver} has no option {name!r}" + (f"; its options: {', '.join(mine)}." if mine else "."))
    return {name: opt.validate(given[name]) if name in given else opt.default for name, opt in mine.items()}


# --------------------------------------------------------------- options several solvers share
MAX_FACTOR = 1e6  # churn, S_noise, η: beyond this every run is NaN or noise
MIN_ALPHA = 1e-4  # Heun's α: its 1/(2α) weights stay far from float32's range
CHURN = Option("churn", float, 0.0, "EDM's S_churn: total noise added over the run (0 = deterministic)", "S_churn", low=0.0, high=MAX_FACTOR)
S_MIN = Option("s_min", float, 0.0, "churn only where σ ≥ S_min", "S_min", low=0.0, allow_inf=True)
S_MAX = Option("s_max", float, math.inf, "churn only where σ ≤ S_max", "S_max", low=0.0, allow_inf=True)
S_NOISE = Option("s_noise", float, 1.0, "scale of the fresh noise (EDM's S_noise)", "S_noise", low=0.0, high=MAX_FACTOR)
ETA = Option("eta", float, 1.0, "η: the share of fresh noise per step (0 = deterministic)", "η", low=0.0, high=MAX_FACTOR)
EDM_CHURN = (CHURN, S_MIN, S_MAX, S_NOISE)


def check_churn_window(options: Mapping[str, Any]) -> None:
    """EDM's churn window must not be empty the wrong way round."""
    if options["s_min"] > options["s_max"]:
        raise ValueError(f"S_min ({options['s_min']:g}) must not exceed S_max ({options['s_max']:g}).")


# --------------------------------------------------------------- options of single solvers
# Declared here rather than beside each solver so that the registry, and with it the CLI's
# `solvers` listing and config validation, reads them without importing torch or scipy.
ADAPTIVE_ATOL = 0.0078  # default tolerances of DPM-Solver-12/-23's step-size control
ADAPTIVE_RTOL = 0.05
REFERENCE_RTOL = 1e-8  # RK45 of the reference solver
BASIS = Option("basis", str, "t", "polynomial variable of ε̂: t (tAB), rho (ρAB = σ) or logrho (diffusers' DEIS)",
               "basis", choices=("t", "rho", "logrho"))
SOLVER_TYPE = Option("solver_type", str, "midpoint", "second-order term of 2M: midpoint (official, diffusers' default) "
                     "or heun (diffusers' solver_type='heun')", "2M type", choices=("midpoint", "heun"))
MAX_ORDER = Option("max_order", int, 4, "highest Adams–Bashforth order (the first steps ramp up from 1)", "max order",
                   low=1, high=4)
VARIANT = Option("variant", str, "bh2", "B(h) of UniPC: bh1 (B = h) or bh2 (B = e^h − 1, diffusers' default)", "B(h)",
                 choices=("bh1", "bh2"))
PREDICTION = Option("prediction", str, "data", "model output the polynomial runs through: data (x̂₀) or noise (ε̂)",
                    "prediction", choices=("data", "noise"))
MIDPOINT = Option("midpoint", str, "geometric", "where DPM-2 evaluates inside a step: geometric = at σ_mid = "
                  "sqrt(σ_i σ_i+1) (k-diffusion's sample_dpm_2), grid = at the explicit σ grid's own points in "
                  "between (σ_0, σ_mid, σ_1, …, as the diffusers KDPM2 preset lays them out with their timesteps)",
                  "midpoint", choices=("geometric", "grid"))
CORRECTOR = Option("corrector", bool, True, "apply UniC after each predictor step (reuses the next evaluation)", "UniC")
CORRECTOR_OFF = Option("corrector", bool, False, "apply UniC after each multistep step (reuses the next evaluation)", "UniC")
UNIPC_OPTIONS = (VARIANT, PREDICTION, CORRECTOR)
RESTART_OPTIONS = (
    Option("restart_min", float, 0.06, "σ where the restart interval ends (snapped to the nearest grid point)", "restart σ_min",
           low=0.0, low_open=True),
    Option("restart_max", float, 0.30, "σ the forward jump goes up to", "restart σ_max", low=0.0, low_open=True),
    Option("restart_k", int, 2, "how many times the interval is re-run (K; 0 = plain Heun)", "K", low=0, high=100),
    Option("restart_steps", int, 3, "Heun steps back down through the interval", "restart steps", low=1, high=1000),
)


def check_restart_interval(options: Mapping[str, Any]) -> None:
    """Restart's interval must not be empty."""
    if options["restart_min"] >= options["restart_max"]:
        raise ValueError(f"The restart interval needs σ_min < σ_max (got {options['restart_min']:g} ≥ {options['restart_max']:g}).")
