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

from explorer.core.discretization import DISCRETIZATIONS, FINALS
from explorer.core.process import PROCESSES, SCALINGS, SCHEDULES

DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")


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
    # --- explicit grids and scheduler presets (issue #12; explorer.core.grids, explorer.core.schedulers) ---
    sigmas: Optional[tuple[float, ...]] = None  # the σ grid itself (last may be 0); replaces disc, steps, σ range
    timesteps: Optional[tuple[float, ...]] = None  # the network's timestep at each positive σ (discrete models)
    init_sigma: Optional[float] = None  # x_0 = latents·init_sigma (diffusers' init_noise_sigma); None: σ(t_0)s(t_0)
    orders: Optional[tuple[int, ...]] = None  # per-step orders of singlestep/multistep solvers, as a preset sets them
    shift: float = 1.0  # σ → shift·σ on the grid (SD3/FLUX timestep shift)
    schedule_label: Optional[str] = None  # where the grid came from (file, preset, optimizer), for display

    def __post_init__(self) -> None:
        for name in ("sigmas", "timesteps", "orders"):  # JSON gives lists; keep the config hashable
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
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
        if not (0 < self.alpha <= 1):
            raise ValueError(f"Heun's α must lie in (0, 1] (got {self.alpha:g}).")
        if not (self.churn >= 0 and math.isfinite(self.churn)):
            raise ValueError(f"Churn must be zero or positive (got {self.churn:g}).")
        if self.churn > 0 and not info.churn:
            raise ValueError(f"Churn applies to euler and heun only, not to {self.solver}.")
        if not (self.s_noise >= 0 and math.isfinite(self.s_noise)):
            raise ValueError(f"S_noise must be zero or positive (got {self.s_noise:g}).")
        if math.isnan(self.s_min) or math.isnan(self.s_max) or self.s_min > self.s_max:
            raise ValueError(f"S_min ({self.s_min:g}) must not exceed S_max ({self.s_max:g}).")
        if not (self.eta >= 0 and math.isfinite(self.eta)):
            raise ValueError(f"η must be zero or positive (got {self.eta:g}).")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive (got {value:g}).")
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
        from explorer.core.grids import validate_grid_fields

        validate_grid_fields(self)

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
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown run-configuration field(s): {', '.join(sorted(unknown))}.")
        clean = {k: (float(v) if v in ("inf", "-inf") else v) for k, v in data.items()}
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


def _choice(what: str, value: Any, allowed: Any) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}; choose one of {', '.join(allowed)}.")


def _positive_finite(what: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a positive finite number (got {value!r}).")


def _integer(what: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer of at least {minimum} (got {value!r}).")
