"""The run configuration: one validated dataclass shared by the GUI, the CLI and files.

It round-trips through JSON (``to_json``/``from_json``) and is stored in every
trajectory file, so any run can be reproduced bit for bit from the command line.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from explorer.core.choices import DISCRETIZATIONS, FINALS, PROCESSES, SCALINGS, SCHEDULES

DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")

# Limits that keep every run computable in float64 without overflow and finished in minutes.
MAX_EVALUATIONS = 100_000  # network evaluations one run may be predicted to cost
SIGMA_LIMITS = (1e-10, 1e10)  # σ_min/σ_max: σ² and log(1 + σ²) stay finite and exact in float64
MIN_ALPHA = 1e-4  # Heun's α: its 1/(2α) weights stay far from float32's range
MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds; sample k uses seed + k
MAX_FACTOR = 1e6  # churn, S_noise, η: beyond this every run is NaN or noise


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run, except the denoiser itself.

    ``steps`` counts the solver's steps (intervals, SPEC §2). Give ``nfe`` instead to
    ask for a budget of network evaluations: the largest step count that fits is used
    (for dpm-solver-fast the budget is spent exactly).
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
    alpha: float = 1.0  # Heun's intermediate point (EDM Algorithm 1)
    churn: float = 0.0  # EDM Algorithm 2: S_churn, S_min, S_max, S_noise
    s_min: float = 0.0
    s_max: float = math.inf
    s_noise: float = 1.0
    eta: float = 1.0  # euler-ancestral, dpm-solver++2m-sde
    rtol: Optional[float] = None  # adaptive solvers; None = the solver's default
    atol: Optional[float] = None
    seed: int = 0
    batch: int = 8
    label: Optional[int] = None  # class for class-conditional denoisers (None = unconditional/zeros)
    dtype: str = "float32"
    device: str = "auto"
    epsilon_s: float = 1e-3
    fast: bool = True  # on CUDA: D replayed as CUDA graphs, states streamed to the host (explorer.core.fast)

    def __post_init__(self) -> None:
        _check_types(self)
        self.validate()

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
        self._validate_sigma_range()
        if self.steps is None and self.nfe is None and not info.adaptive:
            raise ValueError("Give a number of steps or an NFE budget.")
        if self.steps is not None:
            _integer("steps", self.steps, 1)
        if self.nfe is not None:
            _integer("NFE", self.nfe, 1)
        self._validate_cost(info)
        if not (MIN_ALPHA <= self.alpha <= 1):
            raise ValueError(f"Heun's α must lie in [{MIN_ALPHA:g}, 1] (got {self.alpha:g}).")
        for what, value in (("Churn", self.churn), ("S_noise", self.s_noise), ("η", self.eta)):
            if not 0 <= value <= MAX_FACTOR:
                raise ValueError(f"{what} must be zero or positive, at most {MAX_FACTOR:g} (got {value:g}).")
        if self.churn > 0 and not info.churn:
            raise ValueError(f"Churn applies to euler and heun only, not to {self.solver}.")
        if math.isnan(self.s_min) or math.isnan(self.s_max) or self.s_min > self.s_max:
            raise ValueError(f"S_min ({self.s_min:g}) must not exceed S_max ({self.s_max:g}).")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive (got {value:g}).")
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
            cost = info.nfe(self.steps, self.final == "zero") or self.steps
        else:
            return
        if cost > MAX_EVALUATIONS:
            raise ValueError(
                f"This run would cost {cost} network evaluations per sample, more than the {MAX_EVALUATIONS} "
                f"allowed; ask for fewer steps or a smaller NFE budget."
            )

    # ------------------------------------------------------------------ conveniences
    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key, value in d.items():  # JSON has no infinity
            if isinstance(value, float) and math.isinf(value):
                d[key] = "inf" if value > 0 else "-inf"
        return d

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        if not isinstance(data, dict):
            raise ValueError(f"A run configuration must be a mapping of fields (got {type(data).__name__}).")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = {str(k) for k in data} - known
        if unknown:
            raise ValueError(f"Unknown run-configuration field(s): {', '.join(sorted(unknown))}.")
        clean = {k: (float(v) if isinstance(v, str) and v in ("inf", "-inf") else v) for k, v in data.items()}
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


_KINDS = {"str": (str,), "float": (float,), "int": (int,), "bool": (bool,)}
_KIND_WORDS = {"str": "a name", "float": "a number", "int": "an integer", "bool": "true or false"}


def _check_types(config: RunConfig) -> None:
    """Every field holds the type its annotation names (ints are accepted for floats and
    stored as floats), before any comparison could raise a TypeError."""
    for f in dataclasses.fields(config):
        annotation = str(f.type)
        optional = annotation.startswith("Optional[")
        kind = annotation[len("Optional["):-1] if optional else annotation
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
