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
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional, Sequence

KINDS = (float, int, bool, str, tuple)
ITEM_SEP, FIELD_SEP = ",", ":"  # the text of a tuple option: items by commas, an item's fields by colons


@dataclass(frozen=True)
class Option:
    """One setting of a solver.

    Attributes:
        name: key in ``RunConfig.options``; the CLI flag is ``--name`` with ``_`` → ``-``.
        kind: float, int, bool, str (str options take one of ``choices``) or tuple: a list of
            items, each a tuple of numbers declared by ``fields``, written as text
            ``a:b,c:d`` (the CLI and the GUI) and stored as a list of lists in JSON.
        default: the value when none is given; None only for ``optional`` options.
        help: one line, shown by ``--help`` and as the GUI tooltip.
        label: the short name shown in the GUI and in error messages.
        low, high: bounds (None: unbounded); ``low_open``/``high_open`` exclude the bound.
        choices: the allowed strings of a str option.
        optional: None is allowed and means "the solver's own choice" (said in ``help``).
        allow_inf: a float option may be +∞ (S_max).
        fields: a tuple option's fields of one item, in the order the text gives them.
        item: a tuple option's word for one item, in error messages ("restart interval 2: …").
        max_items: the most items a tuple option takes.
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
    fields: tuple["Option", ...] = ()
    item: str = "item"
    max_items: int = 100

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TypeError(f"Option {self.name}: kind must be one of float, int, bool, str, tuple.")
        if self.kind is str and not self.choices:
            raise TypeError(f"Option {self.name}: a str option needs its choices.")
        if (self.kind is tuple) != bool(self.fields) or any(f.kind not in (float, int) for f in self.fields):
            raise TypeError(f"Option {self.name}: a tuple option, and only one, needs its fields (numbers).")
        if not (self.optional and self.default is None):
            self.validate(self.default)

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def metavar(self) -> str:
        """The value's placeholder in ``--help``: FLOAT, INT…, or a tuple option's item form."""
        if self.kind is tuple:
            return self.item_form + ITEM_SEP + "…"
        return self.kind.__name__.upper()

    @property
    def item_form(self) -> str:
        """One item of a tuple option as text ("σ_min:σ_max:K:steps")."""
        return FIELD_SEP.join(f.title for f in self.fields)

    def bounds_text(self) -> str:
        """The allowed range in words, for help texts and errors."""
        if self.kind is tuple:
            return f"{self.item_form} items separated by '{ITEM_SEP}', at most {self.max_items}"
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
        if self.kind is tuple:
            items = self.parse(value) if isinstance(value, str) else value
            return self.validate(None) if items is None else self._validate_items(items)
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

    def _validate_items(self, value: Any) -> tuple[tuple[Any, ...], ...]:
        """A tuple option's items, each field checked by its own declaration; a tuple of
        tuples, so that configs holding it stay hashable (JSON gives lists of lists)."""
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise ValueError(f"{self.title} must be a list of {self.bounds_text()} (got {value!r}).")
        if len(value) > self.max_items:
            raise ValueError(f"{self.title} takes at most {self.max_items} items (got {len(value)}).")
        return tuple(self._item(number, item, Option.validate) for number, item in enumerate(value, 1))

    def _item(self, number: int, values: Any, convert: Callable[["Option", Any], Any], shown: Any = None) -> tuple[Any, ...]:
        """Item ``number`` of a tuple option, each field through ``convert`` (its parse or
        validate), with errors that say which item (``shown``: the item as the user wrote it)."""
        where = f"{self.item.capitalize()} {number}"
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != len(self.fields):
            got = values if shown is None else shown
            raise ValueError(f"{where} needs {len(self.fields)} numbers {self.item_form} (got {got!r}).")
        try:
            return tuple(convert(f, v) for f, v in zip(self.fields, values))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    def text(self, value: Any) -> str:
        """``value`` as text that :meth:`parse` reads back to the same value (CLI, GUI rows)."""
        if value is None:
            return ""
        if self.kind is tuple:
            return ITEM_SEP.join(FIELD_SEP.join(_number_text(v) for v in item) for item in value)
        if self.kind is bool:
            return str(value).lower()
        return _number_text(value) if self.kind in (float, int) else str(value)

    def parse(self, text: str) -> Any:
        """A value from command-line text ('none' for an optional option's default)."""
        text = text.strip()
        if self.optional and text.lower() in ("none", "default", "auto", ""):  # "auto": as `solvers` shows it
            return None
        if self.kind is tuple:
            parts = enumerate(text.split(ITEM_SEP), 1)  # fields parsed here, bounds checked by validate
            return tuple(self._item(n, part.split(FIELD_SEP), Option.parse, part.strip()) for n, part in parts)
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


def _number_text(value: float) -> str:
    """A short form of a number that reads back exactly (``1`` for 1.0, full digits only when needed)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


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
SOLVER_TYPE = Option("solver_type", str, "midpoint", "derivative terms of 2M and of singlestep steps: midpoint (official "
                     "'dpmsolver' type, diffusers' default) or heun (diffusers' solver_type='heun', the official "
                     "'taylor' type)", "solver type", choices=("midpoint", "heun"))
NODES = Option("nodes", str, "interval", "where a singlestep step of order k takes its k − 1 inner nodes: interval = at "
               "fixed λ fractions inside the step (official DPM-Solver; k evaluations a step), grid = at the grid's own "
               "points, blocks of k intervals with steps of orders 1 … k from the block's first state (diffusers' "
               "DPMSolverSinglestepScheduler; one evaluation a step)", "nodes", choices=("interval", "grid"))
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
# PLMS/PNDM: diffusers' PNDMScheduler conventions as options (the explorer's own method is the default).
COMBINE = Option("combine", str, "eps", "what the multistep weights combine: eps (ε̂, each at its own node) or v "
                 "(the network's v = (ε̂ − σ·x̂₀)/√(1+σ²), the sum turned into ε with the current step's σ and state: "
                 "diffusers' PNDMScheduler convention for v-prediction models; about first order)", "combine",
                 choices=("eps", "v"))
PRK_NODES = Option("prk_nodes", str, "midpoint", "midpoint of each Runge–Kutta start step: midpoint (the step's "
                   "t-midpoint, the paper's RK4) or grid (each Runge–Kutta step spans two grid intervals, its midpoint "
                   "the grid point between them: diffusers' PNDMScheduler, whose preset puts its integer timesteps "
                   "t − ⌊T/N/2⌋ there)", "RK nodes", choices=("midpoint", "grid"))
RESTART_MIN = Option("restart_min", float, 0.06, "σ where the restart interval ends (snapped to the nearest grid point)",
                     "restart σ_min", low=0.0, low_open=True)
RESTART_MAX = Option("restart_max", float, 0.30, "σ the forward jump goes up to", "restart σ_max", low=0.0, low_open=True)
RESTART_K = Option("restart_k", int, 2, "how many times the interval is re-run (K; 0 = plain Heun)", "K", low=0, high=100)
RESTART_STEPS = Option("restart_steps", int, 3, "Heun steps back down through the interval", "restart steps", low=1, high=1000)
SINGLE_RESTART = (RESTART_MIN, RESTART_MAX, RESTART_K, RESTART_STEPS)
# One interval of the list: the same bounds as the single-interval options, shorter names.
RESTART_FIELDS = tuple(replace(o, name=name, label=label) for o, (name, label) in
                       zip(SINGLE_RESTART, (("sigma_min", "σ_min"), ("sigma_max", "σ_max"), ("k", "K"), ("steps", "steps"))))
RESTART_INTERVALS = Option(
    "restart_intervals", tuple, None, "several restart intervals (e.g. 0.06:0.3:2:3,0.3:2:1:3), each run when the main "
    "path reaches its σ_min; none = the single interval of the four options above",
    "restart intervals", optional=True, fields=RESTART_FIELDS, item="restart interval")
RESTART_OPTIONS = SINGLE_RESTART + (RESTART_INTERVALS,)


def check_restart_interval(options: Mapping[str, Any]) -> None:
    """Restart's intervals must not be empty, and the list replaces the single interval
    rather than silently overriding values the user set for it."""
    intervals = options.get("restart_intervals")
    if intervals is None:
        _check_one_interval("The restart interval", options["restart_min"], options["restart_max"])
        return
    changed = [o.title for o in SINGLE_RESTART if options[o.name] != o.default]
    if changed:
        raise ValueError(f"Restart intervals replace the single interval: leave {join_names(changed)} at the default.")
    for number, (sigma_min, sigma_max, _, _) in enumerate(intervals, 1):
        _check_one_interval(f"Restart interval {number}", sigma_min, sigma_max)


def _check_one_interval(what: str, sigma_min: float, sigma_max: float) -> None:
    if sigma_min >= sigma_max:
        raise ValueError(f"{what} needs σ_min < σ_max (got {sigma_min:g} ≥ {sigma_max:g}).")
