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

from explorer.core.discretization import DISCRETIZATIONS, FINALS
from explorer.core.guidance import check_guidance
from explorer.core.process import PROCESSES, SCALINGS, SCHEDULES

DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")

# The solver settings that were flat fields before solvers declared their own options,
# with their old defaults. They are still accepted as keyword arguments, read as
# attributes and loaded from older JSON files; they live in ``options``.
LEGACY_OPTIONS: dict[str, Any] = {
    "alpha": 1.0, "churn": 0.0, "s_min": 0.0, "s_max": math.inf, "s_noise": 1.0, "eta": 1.0, "rtol": None, "atol": None,
}


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
    device: str = "auto"
    epsilon_s: float = 1e-3
    fast: bool = True  # on CUDA: D replayed as CUDA graphs, states streamed to the host (explorer.core.fast)
    # Guidance (explorer.core.guidance): D_w = D_guide + w (D − D_guide), for every solver.
    # guide None: classifier-free guidance (the guide is the model with the null label);
    # a model name or file: autoguidance by that weaker model. w = 1 is no guidance.
    guidance: float = 1.0
    guide: Optional[str] = None

    def __init__(self, **values: Any) -> None:
        legacy = {name: values.pop(name) for name in list(values) if name in LEGACY_OPTIONS}
        unknown = set(values) - set(_FIELDS)
        if unknown:
            raise TypeError(f"RunConfig got unknown field(s): {', '.join(sorted(unknown))}.")
        for name, f in _FIELDS.items():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            object.__setattr__(self, name, values.get(name, default))
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
        _choice("device", self.device, DEVICES)
        from explorer.core.solvers import get_solver  # late import: solvers import this module

        info = get_solver(self.solver)
        _positive_finite("ρ", self.rho)
        if not isinstance(self.lower_order_final, bool):
            raise ValueError(f"lower_order_final must be true or false (got {self.lower_order_final!r}).")
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if value is not None:
                _positive_finite(name.replace("sigma_", "σ_"), value)
        if self.sigma_min is not None and self.sigma_max is not None and self.sigma_min >= self.sigma_max:
            raise ValueError(f"σ_min ({self.sigma_min:g}) must be smaller than σ_max ({self.sigma_max:g}).")
        if self.steps is None and self.nfe is None and not info.adaptive:
            raise ValueError("Give a number of steps or an NFE budget.")
        if self.steps is not None:
            _integer("steps", self.steps, 1)
            if self.steps > 100_000:
                raise ValueError(f"{self.steps} steps is more than the 100000 allowed.")
        if self.nfe is not None:
            _integer("NFE", self.nfe, 1)
        _integer("batch", self.batch, 1)
        if self.batch > 65536:
            raise ValueError(f"A batch of {self.batch} is more than the 65536 allowed.")
        _integer("seed", self.seed, 0)
        if self.label is not None:
            _integer("class label", self.label, 0)
        if not (0 < self.epsilon_s < 1):
            raise ValueError(f"ε_s must lie in (0, 1) (got {self.epsilon_s:g}).")
        if not isinstance(self.fast, bool):
            raise ValueError(f"fast must be true or false (got {self.fast!r}).")
        check_guidance(self.guidance, self.guide)

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
        unknown = set(data) - set(_FIELDS) - set(LEGACY_OPTIONS)
        if unknown:
            raise ValueError(f"Unknown run-configuration field(s): {', '.join(sorted(unknown))}.")
        clean = {k: _from_json_number(v) for k, v in data.items() if k not in LEGACY_OPTIONS}
        options = clean.get("options", {})
        if isinstance(options, Mapping):
            clean["options"] = {k: _from_json_number(v) for k, v in options.items()}
        legacy = {k: _from_json_number(v) for k, v in data.items() if k in LEGACY_OPTIONS and v is not None}
        if legacy:
            from explorer.core.solvers import SOLVERS

            info = SOLVERS.get(clean.get("solver", "heun"))
            declared = info.option_names if info is not None else ()
            clean["options"] = {**{k: v for k, v in legacy.items() if k in declared}, **clean.get("options", {})}
        return cls(**clean)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"The run configuration is not valid JSON: {err}.") from None
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


def _choice(what: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; choose one of {', '.join(allowed)}.")


def _positive_finite(what: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a positive finite number (got {value!r}).")


def _integer(what: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer of at least {minimum} (got {value!r}).")
