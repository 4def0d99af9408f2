"""The run configuration: one validated dataclass shared by the GUI, the CLI and files.

It round-trips through JSON (``to_json``/``from_json``) and is stored in every
trajectory file, so any run can be reproduced bit for bit from the command line.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from explorer.core.choices import DISCRETIZATIONS, FINALS, PROCESSES, SCALINGS, SCHEDULES

DTYPES = ("float32", "float64")
PRECISIONS = ("float32", "bfloat16")  # the network F's arithmetic (the state and coefficients keep ``dtype``)
DEVICES = ("auto", "cpu", "cuda")

# The solver settings that were flat fields before solvers declared their own options,
# with their old defaults. They are still accepted as keyword arguments, read as
# attributes and loaded from older JSON files; they live in ``options``.
LEGACY_OPTIONS: dict[str, Any] = {
    "alpha": 1.0, "churn": 0.0, "s_min": 0.0, "s_max": math.inf, "s_noise": 1.0, "eta": 1.0, "rtol": None, "atol": None,
}

# Limits that keep every run computable in float64 without overflow and finished in minutes.
MAX_EVALUATIONS = 100_000  # network evaluations one run may be predicted to cost
SIGMA_LIMITS = (1e-10, 1e10)  # σ_min/σ_max: σ² and log(1 + σ²) stay finite and exact in float64
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; sample k uses seed + k



@dataclass(frozen=True, init=False)
class RunConfig:
    """Everything that determines a run, except the denoiser itself.

    ``steps`` counts the solver's steps (intervals, SPEC §2). Give ``nfe`` instead to
    ask for a budget of network evaluations: the largest step count that fits is used
    (for dpm-solver-fast the budget is spent exactly).

    ``options`` holds the chosen solver's own settings, validated against its declaration
    (:attr:`SolverInfo.options`) and completed with the defaults; ``RunConfig(solver="heun",
    options={"alpha": 0.5})``. The former flat keywords (``churn=5.0``) still work: one the
    solver declares goes into ``options``; one it does not declare must keep its old default.
    """

    process: str = "edm"
    sigma_schedule: Optional[str] = None  # advanced: overrides the process's σ(t)
    scaling: Optional[str] = None  # advanced: overrides the process's s(t)
    disc: str = "edm"
    rho: float = 7.0
    sigma_min: Optional[float] = None
    sigma_max: Optional[float] = None
    solver: str = "heun"
    steps: Optional[int] = 18
    nfe: Optional[int] = None
    final: str = "zero"
    lower_order_final: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)  # the solver's own settings (see above)
    seed: int = 0
    batch: int = 8
    label: Optional[int] = None  # class for class-conditional denoisers (None = unconditional/zeros)
    dtype: str = "float32"
    precision: str = "float32"  # bfloat16: F under bf16 autocast, preconditioning and state in float32
    device: str = "auto"
    epsilon_s: float = 1e-3
    fast: bool = True  # on CUDA: D replayed as CUDA graphs, states streamed to the host (explorer.core.fast)
    # Guidance (explorer.core.guidance): D_w = D_guide + w (D − D_guide), for every solver.
    # guide None: classifier-free guidance (the guide is the model with the null label);
    # a model name or file: autoguidance by that weaker model. w = 1 is no guidance.
    guidance: float = 1.0
    guide: Optional[str] = None
    # --- explicit grids and scheduler presets (issue #12; explorer.core.grids, explorer.core.schedulers) ---
    sigmas: Optional[tuple[float, ...]] = None  # the σ grid itself (last may be 0); replaces disc, steps, σ range
    timesteps: Optional[tuple[float, ...]] = None  # the network's timestep at each positive σ (discrete models)
    init_sigma: Optional[float] = None  # x_0 = latents·init_sigma (diffusers' init_noise_sigma); None: σ(t_0)s(t_0)
    orders: Optional[tuple[int, ...]] = None  # per-step orders of singlestep/multistep solvers, as a preset sets them
    shift: float = 1.0  # σ → shift·σ on the grid (SD3/FLUX timestep shift)
    schedule_label: Optional[str] = None  # where the grid came from (file, preset, optimizer), for display

    def __init__(self, **values: Any) -> None:
        legacy = {name: values.pop(name) for name in list(values) if name in LEGACY_OPTIONS}
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise TypeError(f"RunConfig got unknown field(s): {', '.join(sorted(unknown))}.")
        for name, f in _FIELDS.items():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            value = values.get(name, default)
            if name in ("sigmas", "timesteps", "orders") and isinstance(value, list):
                value = tuple(value)  # JSON gives lists; keep the config hashable and comparable
            object.__setattr__(self, name, value)
        _check_types(self)
        object.__setattr__(self, "options", self._resolved_options(legacy))
        self.validate()

    def _resolved_options(self, legacy: dict[str, Any]) -> dict[str, Any]:
        """The validated options of the solver from ``options`` and any flat keywords."""
        from explorer.core.solvers import get_solver  # late import: solvers import this module

        if not isinstance(self.options, Mapping):
            raise ValueError(f"options must be a mapping of option names to values (got {self.options!r}).")
        info = get_solver(self.solver) if isinstance(self.solver, str) else None
        if info is None:
            raise ValueError(f"Unknown solver {self.solver!r}.")
        given = dict(self.options)
        for name, value in legacy.items():
            if name in info.option_names:
                given[name] = value
            elif not _is_default(name, value):
                given[name] = value  # resolve() says which solvers have it
        return info.resolve_options(given)

    def __getattr__(self, name: str) -> Any:
        """The former flat fields, read from ``options`` (their old default when the
        solver has no such option), so code written before options still reads them."""
        if name in LEGACY_OPTIONS:
            options = self.__dict__.get("options") or {}
            return options.get(name, LEGACY_OPTIONS[name])
        raise AttributeError(f"'RunConfig' object has no attribute {name!r}")

    def __hash__(self) -> int:
        return hash(self.to_json())

    def option(self, name: str) -> Any:
        """The value of one of the solver's options (KeyError if it has none of that name)."""
        return self.options[name]

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError, with a sentence a user understands, for impossible settings."""
        _choice("process", self.process, PROCESSES)
        if self.sigma_schedule is not None:
            _choice("σ(t) schedule", self.sigma_schedule, SCHEDULES)
        if self.scaling is not None:
            _choice("scaling", self.scaling, SCALINGS)
        _choice("discretization", self.disc, DISCRETIZATIONS)
        _choice("final step", self.final, FINALS)
        _choice("dtype", self.dtype, DTYPES)
        _choice("network precision", self.precision, PRECISIONS)
        if self.precision != "float32" and self.dtype != "float32":
            raise ValueError(f"A {self.precision} network runs inside float32 runs only (dtype is {self.dtype}).")
        _choice("device", self.device, DEVICES)
        from explorer.core.solvers import get_solver  # late import: solvers import this module

        info = get_solver(self.solver)
        if self.precision != "float32" and info.float64:
            raise ValueError("The reference solver is the float64 ground truth; its network cannot run in "
                             f"{self.precision}.")
        _positive_finite("ρ", self.rho)
        if not isinstance(self.lower_order_final, bool):
            raise ValueError(f"lower_order_final must be true or false (got {self.lower_order_final!r}).")
        self._validate_sigma_range()
        if self.steps is None and self.nfe is None and not info.adaptive:
            raise ValueError("Give a number of steps or an NFE budget.")
        if self.steps is not None:
            _integer("steps", self.steps, 1)
        if self.nfe is not None:
            _integer("NFE", self.nfe, 1)
        self._validate_cost(info)
        _integer("batch", self.batch, 1)
        if self.batch > 65536:
            raise ValueError(f"A batch of {self.batch} is more than the 65536 allowed.")
        _integer("seed", self.seed, 0)
        if self.seed + self.batch - 1 > MAX_SEED:
            raise ValueError(f"seed + batch − 1 must be at most 2⁶³ − 1 (got seed {self.seed} with batch {self.batch}).")
        if self.label is not None:
            _integer("class label", self.label, 0)
        if not (1e-8 <= self.epsilon_s < 1):
            raise ValueError(f"ε_s must lie in [1e-8, 1) (got {self.epsilon_s:g}).")
        check_guidance(self.guidance, self.guide)
        from explorer.core.grids import validate_grid_fields

        validate_grid_fields(self)

    def _validate_sigma_range(self) -> None:
        lo, hi = SIGMA_LIMITS
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if value is not None:
                label = name.replace("sigma_", "σ_")
                _positive_finite(label, value)
                if not lo <= value <= hi:
                    raise ValueError(f"{label} must lie between {lo:g} and {hi:g} (got {value:g}).")
        if self.sigma_min is not None and self.sigma_max is not None and self.sigma_min >= self.sigma_max:
            raise ValueError(f"σ_min ({self.sigma_min:g}) must be smaller than σ_max ({self.sigma_max:g}).")

    def _validate_cost(self, info: Any) -> None:
        """Refuse, before anything runs, a run predicted to cost more than MAX_EVALUATIONS."""
        if self.nfe is not None:
            cost = self.nfe
        elif self.steps is not None:
            cost = info.nfe(self.steps, self.final == "zero", self.options) or self.steps
        else:
            return
        if cost > MAX_EVALUATIONS:
            raise ValueError(
                f"This run would cost {cost} network evaluations per sample, more than the {MAX_EVALUATIONS} "
                f"allowed; ask for fewer steps or a smaller NFE budget."
            )

    # ------------------------------------------------------------------ conveniences
    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed (validated).

        A new solver keeps the options it declares the same way and starts the others
        at their defaults; flat option keywords (``churn=…``) are merged into the options.
        """
        from explorer.core.solvers import carry_options

        values = {name: getattr(self, name) for name in _FIELDS}
        if "options" not in changes:
            solver = changes.get("solver", self.solver)
            changes["options"] = carry_options(self.solver, self.options, solver) if isinstance(solver, str) else {}
        values.update(changes)
        return RunConfig(**values)

    def with_options(self, **options: Any) -> "RunConfig":
        """A copy with some of the solver's options changed (validated)."""
        return self.replace(options={**self.options, **options})

    def to_dict(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _FIELDS}
        d["options"] = {k: _json_number(v) for k, v in sorted(self.options.items())}
        return {k: _json_number(v) for k, v in d.items()}

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """A config from its dict; older dicts with the flat option fields load too (the
        fields the solver has no option for are dropped, as they never applied)."""
        if not isinstance(data, dict):
            raise ValueError(f"A run configuration must be a mapping of fields (got {type(data).__name__}).")
        unknown = {str(k) for k in data} - set(_FIELDS) - set(LEGACY_OPTIONS)
        if unknown:
            raise ValueError(f"Unknown run-configuration field(s): {', '.join(sorted(unknown))}.")
        clean = {k: _from_json_number(v) for k, v in data.items() if k not in LEGACY_OPTIONS}
        options = clean.get("options", {})
        if isinstance(options, Mapping):
            clean["options"] = {k: _from_json_number(v) for k, v in options.items()}
        legacy = {k: _from_json_number(v) for k, v in data.items() if k in LEGACY_OPTIONS and v is not None}
        if legacy:
            from explorer.core.solvers import SOLVERS

            solver = clean.get("solver", "heun")
            info = SOLVERS.get(solver) if isinstance(solver, str) else None  # a wrong type is refused below
            declared = info.option_names if info is not None else ()
            options = clean.get("options", {})
            if isinstance(options, Mapping):  # anything else is refused, with a sentence, by __init__
                clean["options"] = {**{k: v for k, v in legacy.items() if k in declared}, **options}
        return cls(**clean)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"The run configuration is not valid JSON: {err}.") from None
        except RecursionError:
            raise ValueError("The run configuration nests its JSON too deeply to be one.") from None
        if not isinstance(data, dict):
            raise ValueError("The run configuration must be a JSON object.")
        return cls.from_dict(data)


_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _is_default(name: str, value: Any) -> bool:
    default = LEGACY_OPTIONS[name]
    return value is None if default is None else value == default


def _json_number(value: Any) -> Any:
    """JSON has no infinity: ±inf become the strings "inf"/"-inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _from_json_number(value: Any) -> Any:
    return float(value) if isinstance(value, str) and value in ("inf", "-inf") else value


_KINDS = {"str": (str,), "float": (float,), "int": (int,), "bool": (bool,)}
_KIND_WORDS = {"str": "a name", "float": "a number", "int": "an integer", "bool": "true or false"}


def _check_types(config: RunConfig) -> None:
    """Every field holds the type its annotation names (ints are accepted for floats and
    stored as floats), before any comparison could raise a TypeError."""
    for f in dataclasses.fields(config):
        annotation = str(f.type)
        optional = annotation.startswith("Optional[")
        kind = annotation[len("Optional["):-1] if optional else annotation
        if kind not in _KINDS:  # options: checked against the solver's declarations
            continue
        value = getattr(config, f.name)
        if value is None and optional:
            continue
        ok = isinstance(value, _KINDS[kind]) and (kind == "bool" or not isinstance(value, bool))
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            try:
                value, ok = float(value), True
            except OverflowError:
                raise ValueError(f"{f.name} is too large a number (got an integer of {len(str(value))} digits).") from None
            object.__setattr__(config, f.name, value)
        if not ok:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            none = " or nothing (null)" if optional else ""
            raise ValueError(f"{f.name} must be {_KIND_WORDS[kind]}{none} (got {type(value).__name__} {shown}).")


def _choice(what: str, value: Any, allowed: Any) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; choose one of {', '.join(allowed)}.")


def _positive_finite(what: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a positive finite number (got {value!r}).")


def _integer(what: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer of at least {minimum} (got {value!r}).")


def check_guidance(scale: object, guide: object) -> None:
    """Guidance fields (explorer.core.guidance, which needs torch; this check does not): the guide's
    existence is checked when it is loaded."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"The guidance scale w must be a finite number ≥ 0 (got {scale!r}; 1 = no guidance).")
    if guide is not None and (not isinstance(guide, str) or not guide.strip()):
        raise ValueError(f"The guide must name a model (a shipped name or a file), or be empty (got {guide!r}).")
