"""Solvers side by side: several run configurations over one denoiser and one set of latents.

A :class:`Comparison` is the reproducible description (model, seed, batch, columns,
reference tolerance) that round-trips through JSON; :func:`comparison_events` runs it
as a generator (so the GUI's worker can cancel between steps), and
:class:`ComparisonResult` holds the trajectories and measures each column's error
against a high-accuracy reference run.

Why one reference grid for all columns: the reference solver integrates through every
point of its plan, so a reference whose grid is the union of the columns' σ's passes
through every state of every column. The probability-flow ODE of the unscaled state
x/s is the same function of σ for every process (EDM §3), so columns with different
processes or step counts are all compared with one run, in data space, at equal σ.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import torch

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.events import StepEvent
from explorer.core.latents import NoiseStreams, seeds_for
from explorer.core.sampling import make_plan, sample_steps
from explorer.core.solvers import PALETTE, get_solver, solver_color  # noqa: F401 - PALETTE, solver_color re-exported
from explorer.core.solvers.context import Plan
from explorer.core.solvers.options import REFERENCE_RTOL
from explorer.core.trajectory import Trajectory, TrajectoryRecorder

FORMAT = "explorer-comparison/1"
MAX_COLUMNS = 16
SIGMA_MATCH_RTOL = 1e-7  # σ's computed by different processes agree to ~1e-15; this leaves room

# Colours, the same in every view and export. Columns get one each by their place (heun at 5,
# 10 and 18 steps must differ at a glance); the sweep, which plots solvers, uses the solvers'
# declared colours (SolverInfo.color, else the registry's palette order).
REFERENCE_COLOR = "#000000"


def column_color(index: int) -> str:
    """The colour of column ``index`` (0-based); the reference (−1) is black."""
    return REFERENCE_COLOR if index < 0 else PALETTE[index % len(PALETTE)]


# --------------------------------------------------------------------------- description
@dataclass(frozen=True)
class Comparison:
    """Columns of run configurations over one model and the very same latents.

    The comparison's ``seed`` and ``batch`` override the columns' own, so every column
    starts from identical latents (and stochastic solvers draw from identical streams).
    """

    model: str
    columns: tuple[RunConfig, ...]
    seed: int = 0
    batch: int = 8
    reference: bool = True
    reference_rtol: float = REFERENCE_RTOL

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("A comparison needs a model (a built-in name or a file).")
        cols = tuple(self.columns)
        if not cols:
            raise ValueError("A comparison needs at least one column.")
        if len(cols) > MAX_COLUMNS:
            raise ValueError(f"A comparison holds at most {MAX_COLUMNS} columns (got {len(cols)}).")
        if not all(isinstance(c, RunConfig) for c in cols):
            raise ValueError("Every column of a comparison must be a run configuration.")
        if not (isinstance(self.reference_rtol, float) and 0 < self.reference_rtol < 1e-2):
            raise ValueError(f"The reference tolerance must lie in (0, 0.01) (got {self.reference_rtol!r}).")
        aligned = tuple(c.replace(seed=self.seed, batch=self.batch) for c in cols)  # validates seed and batch
        object.__setattr__(self, "columns", aligned)

    # ------------------------------------------------------------------ editing
    def add(self, config: RunConfig) -> "Comparison":
        return dataclasses.replace(self, columns=self.columns + (config,))

    def set(self, index: int, config: RunConfig) -> "Comparison":
        self._check_index(index)
        cols = list(self.columns)
        cols[index] = config
        return dataclasses.replace(self, columns=tuple(cols))

    def remove(self, index: int) -> "Comparison":
        self._check_index(index)
        return dataclasses.replace(self, columns=self.columns[:index] + self.columns[index + 1 :])

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self.columns):
            raise ValueError(f"There is no column {index + 1}; the comparison has {len(self.columns)}.")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "seed": self.seed, "batch": self.batch, "reference": self.reference,
            "reference_rtol": self.reference_rtol, "columns": [c.to_dict() for c in self.columns],
        }

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> "Comparison":
        check_fields(cls, data, "A comparison", "comparison field")
        if "model" not in data or "columns" not in data:
            raise ValueError("A comparison needs 'model' and 'columns'.")
        if not isinstance(data["columns"], list):
            raise ValueError("A comparison's 'columns' must be a list of run configurations.")
        fields = dict(data)
        for k, column in enumerate(data["columns"]):
            check_fields(RunConfig, column, f"Column {k + 1} of the comparison", "run-configuration field")
        fields["columns"] = tuple(RunConfig.from_dict(c) for c in data["columns"])
        if isinstance(fields.get("reference_rtol"), int):
            fields["reference_rtol"] = float(fields["reference_rtol"])
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str) -> "Comparison":
        from explorer.core.files import parse_json

        return cls.from_dict(parse_json(text, "The comparison"))


def check_fields(cls: type, data: Any, what: str, field_name: str) -> None:
    """A JSON object whose keys are fields of the dataclass ``cls`` and whose values have the fields' types.

    A ValueError names the stray keys, or the first field whose value is of the wrong JSON type
    (a string where a number belongs, a list where a name belongs), before anything is built.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object.")
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"Unknown {field_name}(s): {', '.join(sorted(unknown))}.")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _json_type_ok(value, hints.get(key, Any)):
            shown = repr(value) if isinstance(value, (str, int, float, bool)) else f"a {type(value).__name__}"
            raise ValueError(f"{what}: {field_name} {key!r} must be {_type_name(hints[key])}, not {shown[:40]}.")


def _json_type_ok(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a dataclass annotation (floats may be "inf"/"-inf" strings)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_json_type_ok(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("inf", "-inf")
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, (list, tuple))
    return True


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Union:
        return " or ".join(_type_name(arg) for arg in typing.get_args(hint))
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, "a list" if typing.get_origin(hint) in (tuple, list) else str(hint))


def shared_noise(denoiser: Denoiser, seed: int, batch: int) -> torch.Tensor:
    """The latents every column starts from: sample k from seed + k, as a single run draws them."""
    return NoiseStreams(seeds_for(seed, batch)).randn(denoiser.shape)


# --------------------------------------------------------------------------- results
@dataclass
class ColumnRun:
    """One finished column: its trajectory, how long it took (wall clock) and its place.

    ``column`` is the column's index (−1 for the reference, None when unknown); it picks
    the colour. ``cancelled`` marks a run stopped part-way (its steps so far are kept).
    """

    config: RunConfig
    trajectory: Trajectory
    seconds: float
    column: Optional[int] = None
    cancelled: bool = False

    @property
    def label(self) -> str:
        return column_label(self.config, self.trajectory)

    @property
    def color(self) -> str:
        return solver_color(self.config.solver) if self.column is None else column_color(self.column)


def column_label(config: RunConfig, trajectory: Optional[Trajectory] = None) -> str:
    """'heun · 18 steps · NFE 35' (the steps and NFE actually spent once the run is done); a ρ
    other than EDM's 7 is named ('· ρ 3'), so the columns of a ρ grid tell themselves apart."""
    grid = f" · {config.schedule_label or 'custom grid'}" if config.sigmas is not None or config.schedule_label else ""
    if config.sigmas is None and config.disc == "edm" and config.rho != RunConfig.rho:
        grid += f" · ρ {config.rho:g}"
    if trajectory is None:
        steps = len(config.sigmas) - 1 if config.sigmas is not None else (config.steps if config.nfe is None else None)
        spent = f"{steps} steps" if steps else (f"NFE ≤ {config.nfe}" if config.nfe else "adaptive")
        return f"{config.solver} · {spent}{grid}"
    return f"{config.solver} · {trajectory.num_steps} steps · NFE {trajectory.nfe}{grid}"


@dataclass
class ColumnError:
    """A column's error against the reference (RMSE in data space, x/s).

    ``final`` compares the final samples; ``step`` has one entry per state of the column
    (NaN where the reference has no state at that σ).
    """

    final: float
    step_sigma: list[float]
    step: list[float]


@dataclass
class CompareProgress:
    """What :func:`comparison_events` yields: a step of a column (or of the reference), or a finished run.

    ``column`` is the column index, or −1 for the reference run.
    """

    column: int
    total_columns: int
    event: Optional[StepEvent] = None
    run: Optional[ColumnRun] = None

    @property
    def is_reference(self) -> bool:
        return self.column < 0


@dataclass
class ComparisonResult:
    """The runs of a comparison (one slot per column, None until it has run) and the reference run."""

    comparison: Comparison
    noise: torch.Tensor
    runs: list[Optional[ColumnRun]] = field(default_factory=list)
    reference: Optional[ColumnRun] = None

    def __post_init__(self) -> None:
        if not self.runs:
            self.runs = [None] * len(self.comparison.columns)

    @property
    def complete(self) -> bool:
        return all(r is not None for r in self.runs)

    def finished(self) -> list[ColumnRun]:
        """The runs that exist, in column order."""
        return [r for r in self.runs if r is not None]

    def errors(self) -> list[Optional[ColumnError]]:
        """Each finished column's error against the reference (None without a reference)."""
        ref = None if self.reference is None else self.reference.trajectory
        return [None if ref is None else column_error(r.trajectory, ref) for r in self.finished()]

    def table(self) -> list[dict[str, Any]]:
        """Rows of the error table: solver, steps, NFE, time, error (None without a reference)."""
        return [
            {
                "solver": run.config.solver, "steps": run.trajectory.num_steps, "nfe": run.trajectory.nfe,
                "seconds": run.seconds, "error": None if err is None else err.final,
            }
            for run, err in zip(self.finished(), self.errors())
        ]


def format_table(rows: Sequence[dict[str, Any]], with_time: bool = True) -> str:
    """The error table as aligned text (the CLI prints it)."""
    head = f"{'#':>2}  {'solver':<22} {'steps':>5} {'NFE':>5}" + (f" {'time s':>8}" if with_time else "") + f" {'RMSE vs ref':>12}"
    lines = [head]
    for i, r in enumerate(rows, 1):
        err = "—" if r["error"] is None else f"{r['error']:.4e}"
        line = f"{i:>2}  {r['solver']:<22} {r['steps']:>5} {r['nfe']:>5}"
        if with_time:
            line += f" {r['seconds']:>8.3f}"
        lines.append(line + f" {err:>12}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- errors
def data_space(trajectory: Trajectory) -> torch.Tensor:
    """Every state as x/s (float64): what the PF-ODE solution is the same for in every process."""
    scale = trajectory.scale.to(torch.float64).reshape(-1, *([1] * (trajectory.x.ndim - 1)))
    return trajectory.x.to(torch.float64) / scale


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(torch.float64) - b.to(torch.float64)).square().mean().sqrt())


def match_sigma(sigmas: torch.Tensor, sigma: float) -> Optional[int]:
    """Index of the state at (numerically) the same σ, or None; the last one wins for repeats."""
    s = sigmas.to(torch.float64)
    if sigma == 0:
        hits = (s == 0).nonzero()
    else:
        hits = ((s - sigma).abs() <= SIGMA_MATCH_RTOL * abs(sigma)).nonzero()
    return int(hits[-1]) if len(hits) else None


def column_error(trajectory: Trajectory, reference: Trajectory) -> ColumnError:
    """RMSE against the reference at the final state and at every state whose σ it shares."""
    mine, ref = data_space(trajectory), data_space(reference)
    step_sigma = [float(s) for s in trajectory.sigma]
    step = []
    for i, sigma in enumerate(step_sigma):
        j = match_sigma(reference.sigma, sigma)
        step.append(math.nan if j is None else rmse(mine[i], ref[j]))
    return ColumnError(final=step[-1], step_sigma=step_sigma, step=step)


def difference(trajectory: Trajectory, reference: Trajectory) -> Optional[torch.Tensor]:
    """Final samples minus the reference's state at the same σ (data space), or None without a match."""
    j = match_sigma(reference.sigma, float(trajectory.sigma[-1]))
    if j is None:
        return None
    return data_space(trajectory)[-1] - data_space(reference)[j]


# --------------------------------------------------------------------------- step sync
def sigma_axis(trajectories: Sequence[Trajectory]) -> list[float]:
    """Every σ any column visits, descending and without near-duplicates: the σ-mode slider's stops."""
    return sigma_axis_values([float(s) for tr in trajectories for s in tr.sigma])


def sigma_axis_values(sigmas: Sequence[float]) -> list[float]:
    """σ's sorted descending, each run of values equal within :data:`SIGMA_MATCH_RTOL` kept once."""
    values = sorted({float(s) for s in sigmas}, reverse=True)
    out: list[float] = []
    for v in values:
        if not out or abs(out[-1] - v) > SIGMA_MATCH_RTOL * max(abs(v), 1e-300):
            out.append(v)
    return out


def index_at_sigma(trajectory: Trajectory, sigma: float) -> int:
    """The state of a run nearest to σ in log σ (σ = 0 is nearest only to itself or the smallest σ)."""
    s = trajectory.sigma.to(torch.float64)
    if sigma <= 0:
        return int((s == 0).nonzero()[-1]) if bool((s == 0).any()) else len(s) - 1
    floor = sigma * 1e-12
    dist = (s.clamp_min(floor).log() - math.log(sigma)).abs()
    return int(torch.argmin(dist))


def index_at_step(trajectory: Trajectory, step: int) -> int:
    """Step-mode sync: the same step index, held at the last state for shorter runs."""
    return max(0, min(step, trajectory.num_steps))


# --------------------------------------------------------------------------- running
def reference_config(base: RunConfig, rtol: float) -> RunConfig:
    """The reference run's configuration: the reference solver in float64, everything else as ``base``."""
    return base.replace(solver="reference", steps=None, nfe=None, dtype="float64", options={"rtol": rtol, "atol": None})


def reference_plan(first: Plan, plans: Sequence[Plan], sigmas: Sequence[float]) -> Plan:
    """A plan in ``first``'s process through the σ's given, descending (near-equal ones once).

    The reference solver integrates between consecutive grid points, so its states
    land exactly on the columns' σ's; a final 0 is the usual first-order step.
    ``plans`` give the nominal σ range.
    """
    process = first.process
    positive = [s for s in sigma_axis_values(sigmas) if s > 0]
    t = [float(process.sigma_inv(s)) for s in positive]
    t = [v for i, v in enumerate(t) if i == 0 or v < t[i - 1]]  # strictly decreasing
    final_zero = any(s == 0 for s in sigmas)
    if final_zero:
        t.append(0.0)
    los = [p.sigma_range[0] for p in plans]
    his = [p.sigma_range[1] for p in plans]
    return Plan(process, (min(los), max(his)), t, None, "zero" if final_zero else "sigma_min", None, first.disc)


def _timed_run(
    denoiser: Denoiser, config: RunConfig, noise: torch.Tensor, column: int, total: int,
    denoiser_id: str, record_evals: bool, plan: Optional[Plan] = None,
) -> Iterator[CompareProgress]:
    recorder = TrajectoryRecorder(config, denoiser_id, record_evals, data_range=getattr(denoiser, "data_range", None))
    start = time.perf_counter()
    for event in sample_steps(denoiser, config, noise, record_evals=record_evals, plan=plan):
        recorder.add(event)
        yield CompareProgress(column, total, event=event)
    seconds = time.perf_counter() - start
    yield CompareProgress(column, total, run=ColumnRun(config, recorder.finish(), seconds, column))


def comparison_events(
    denoiser: Denoiser,
    comparison: Comparison,
    with_reference: Optional[bool] = None,
    record_evals: bool = True,
    columns: Optional[Sequence[int]] = None,
) -> Iterator[CompareProgress]:
    """Run the columns one after another (then the reference), yielding every step.

    One after another, not concurrently: the columns share one denoiser module, and a
    run moves it to its own device and dtype. Stop iterating to cancel.
    """
    noise = shared_noise(denoiser, comparison.seed, comparison.batch)
    indices = list(range(len(comparison.columns))) if columns is None else list(columns)
    total = len(comparison.columns)
    visited: list[float] = []
    for k in indices:
        for progress in _timed_run(denoiser, comparison.columns[k], noise, k, total, comparison.model, record_evals):
            if progress.run is not None:
                visited += adaptive_sigmas(progress.run)
            yield progress
    if comparison.reference if with_reference is None else with_reference:
        yield from reference_events(denoiser, comparison, noise, visited)


def share_groups(columns: Sequence[RunConfig], indices: Sequence[int]) -> list[list[int]]:
    """Columns that can step in turn on one worker: the same device and dtype (the comparison
    already fixes the batch), since a run moves the shared denoiser to its own device and dtype."""
    groups: dict[tuple[str, str], list[int]] = {}
    for k in indices:
        groups.setdefault((columns[k].device, columns[k].dtype), []).append(k)
    return list(groups.values())


def interleaved_events(
    denoiser: Denoiser, comparison: Comparison, record_evals: bool = True, columns: Optional[Sequence[int]] = None,
) -> Iterator[CompareProgress]:
    """The columns of each :func:`share_groups` group one step each in turn (for a GPU, where a
    column's kernels are short and the next column's step can follow at once); groups run one
    after another. Every column's trajectory equals its sequential run's; its ``seconds`` is the
    time spent in its own steps. No reference run (start it afterwards, as the tab does)."""
    noise = shared_noise(denoiser, comparison.seed, comparison.batch)
    indices = list(range(len(comparison.columns))) if columns is None else list(columns)
    total = len(comparison.columns)
    for group in share_groups(comparison.columns, indices):
        live = {k: (sample_steps(denoiser, comparison.columns[k], noise, record_evals=record_evals),
                    TrajectoryRecorder(comparison.columns[k], comparison.model, record_evals), [0.0]) for k in group}
        outside = torch.is_inference_mode_enabled()
        inside = {k: outside for k in group}  # each run's own inference mode between its steps
        while live:
            for k in list(live):
                steps, recorder, spent = live[k]
                start = time.perf_counter()
                # a run steps inside its own `with inference_mode()`; interleaved, those blocks would
                # nest out of order and leave the mode on, so each run gets its mode back per step
                with torch.inference_mode(inside[k]):
                    event = next(steps, None)
                    inside[k] = torch.is_inference_mode_enabled()
                spent[0] += time.perf_counter() - start
                if event is None:
                    del live[k]
                    yield CompareProgress(k, total, run=ColumnRun(comparison.columns[k], recorder.finish(), spent[0], k))
                else:
                    recorder.add(event)
                    yield CompareProgress(k, total, event=event)


def adaptive_sigmas(run: ColumnRun) -> list[float]:
    """The σ's an adaptive column chose during its run (its plan knows only the ends)."""
    if not get_solver(run.config.solver).adaptive:
        return []
    return [float(s) for s in run.trajectory.sigma]


def reference_events(denoiser: Denoiser, comparison: Comparison, noise: Optional[torch.Tensor] = None,
                     visited: Sequence[float] = ()) -> Iterator[CompareProgress]:
    """The reference run (column −1) through every σ of every column's plan, and through
    ``visited`` (the steps adaptive columns chose, see :func:`adaptive_sigmas`)."""
    noise = shared_noise(denoiser, comparison.seed, comparison.batch) if noise is None else noise
    plans = [make_plan(denoiser, c) for c in comparison.columns]
    planned = [float(p.process.sigma(t)) if t > 0 else 0.0 for p in plans for t in p.t]
    planned += [0.0 for p in plans if p.final == "denoise"]  # its extra state at σ = 0
    plan = reference_plan(plans[0], plans, planned + list(visited))
    config = reference_config(comparison.columns[0], comparison.reference_rtol).replace(final=plan.final)
    yield from _timed_run(denoiser, config, noise, -1, len(comparison.columns), comparison.model, False, plan)


def run_comparison(
    denoiser: Denoiser, comparison: Comparison, with_reference: Optional[bool] = None, record_evals: bool = True,
) -> ComparisonResult:
    """Run every column (and the reference) to completion."""
    result = ComparisonResult(comparison, shared_noise(denoiser, comparison.seed, comparison.batch))
    for progress in comparison_events(denoiser, comparison, with_reference, record_evals):
        absorb(result, progress)
    return result


def absorb(result: ComparisonResult, progress: CompareProgress) -> None:
    """Store a finished run from a progress item in its column's slot (or as the reference)."""
    if progress.run is None:
        return
    if progress.is_reference:
        result.reference = progress.run
    else:
        result.runs[progress.column] = progress.run
