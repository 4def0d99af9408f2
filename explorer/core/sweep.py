"""Error against NFE: the convergence study of the DPM-Solver paper, for any solvers.

For each solver and each NFE budget the run is repeated from the same latents and its
final samples are compared with a reference: the exact PF-ODE solution when the
denoiser is a :class:`GaussianDenoiser` (SPEC §5), else one run of the ``reference``
solver (RK45, float64) through every final σ the runs end at. The slope of log error
against log NFE, fitted per solver, is the empirical order.

Steps are chosen by budget (``RunConfig.nfe``), so a budget a solver cannot meet
exactly uses the largest step count that fits and the NFE actually spent is recorded;
budgets that land on a step count already run are not run twice.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from explorer.core.analytic import GaussianDenoiser
from explorer.core.compare import data_space, match_sigma, reference_config, reference_plan, rmse, shared_noise
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.plan import resolve_steps
from explorer.core.schedule_axis import schedule_config
from explorer.core.sampling import make_plan, sample_steps
from explorer.core.solvers import get_solver
from explorer.core.solvers.options import REFERENCE_RTOL
from explorer.core.trajectory import Trajectory, TrajectoryRecorder

MAX_BUDGET = 100_000


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: what was asked, what was spent, and its final error."""

    solver: str
    budget: int
    steps: int
    nfe: int
    error: float
    seconds: float


@dataclass
class SweepResult:
    """The points of a sweep and how its reference was obtained ("exact solution" or "reference solver")."""

    base: RunConfig
    solvers: list[str]
    points: list[SweepPoint] = field(default_factory=list)
    reference_kind: str = "exact solution"
    skipped: list[str] = field(default_factory=list)

    def of(self, solver: str) -> list[SweepPoint]:
        return sorted((p for p in self.points if p.solver == solver), key=lambda p: p.nfe)

    def orders(self) -> dict[str, float]:
        """The fitted empirical order of each solver (NaN with fewer than two usable points)."""
        return {s: fit_order([p.nfe for p in self.of(s)], [p.error for p in self.of(s)]) for s in self.solvers}

    def rows(self) -> list[dict[str, Any]]:
        """Table rows (solver, budget, steps, NFE, error, fitted order of the solver)."""
        orders = self.orders()
        return [
            {"solver": p.solver, "budget": p.budget, "steps": p.steps, "nfe": p.nfe, "error": p.error, "order": orders[p.solver]}
            for s in self.solvers for p in self.of(s)
        ]


@dataclass
class SweepProgress:
    """Yielded by :func:`sweep_events`: ``done`` of ``total`` runs, the newest point, and at the end the result."""

    done: int
    total: int
    point: Optional[SweepPoint] = None
    message: str = ""
    result: Optional[SweepResult] = None


def fit_order(nfe: Sequence[float], error: Sequence[float]) -> float:
    """−slope of the least-squares line through (log NFE, log error): the empirical order.

    Zero or non-finite errors (exact answers, failed runs) carry no slope and are left out.
    Kept here rather than in the plotting module so the core needs no matplotlib.
    """
    pts = [(math.log(n), math.log(e)) for n, e in zip(nfe, error) if n > 0 and e > 0 and math.isfinite(e)]
    if len({x for x, _ in pts}) < 2:
        return math.nan
    x, y = np.array(pts).T
    xc = x - x.mean()
    return float(-(xc @ (y - y.mean())) / (xc @ xc))


def parse_list(text: str, what: str) -> list[str]:
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise ValueError(f"Give at least one {what} (a comma-separated list).")
    return items


def parse_budgets(text: str) -> list[int]:
    """'5,10,20,50' → [5, 10, 20, 50] (sorted, without repeats)."""
    try:
        values = sorted({int(v) for v in parse_list(text, "NFE")})
    except ValueError:
        raise ValueError(f"NFE budgets must be whole numbers separated by commas (got {text!r}).") from None
    if values[0] < 1 or values[-1] > MAX_BUDGET:
        raise ValueError(f"NFE budgets must lie between 1 and {MAX_BUDGET} (got {text!r}).")
    return values


def sweep_configs(base: RunConfig, solvers: Sequence[str], budgets: Sequence[int], schedules: Sequence[str] = ("default",),
                  denoiser: Optional[Denoiser] = None) -> tuple[list[tuple[int, RunConfig]], list[str]]:
    """The (budget, config) pairs to run and a note for each budget that was skipped.

    Adaptive solvers pick their own steps and cannot take part; a budget below a
    solver's minimum NFE, or one that gives a step count already planned, is skipped.
    """
    runs: list[tuple[int, RunConfig]] = []
    skipped: list[str] = []
    for name in solvers:
        info = get_solver(name)
        if info.adaptive:
            raise ValueError(f"{name} chooses its own steps, so it cannot be swept over NFE budgets.")
        seen: set[int] = set()
        for budget in budgets:
            config = base.replace(solver=name, steps=None, nfe=int(budget))  # options carry over where they apply
            try:
                steps = resolve_steps(config, info)
            except ValueError as err:
                skipped.append(str(err))
                continue
            if steps in seen:
                skipped.append(f"{name}: NFE {budget} gives the same {steps} steps as a smaller budget.")
                continue
            seen.add(steps)
            runs.extend((int(budget), c) for c in _on_schedules(config, steps, schedules, denoiser, skipped))
    if not runs:
        raise ValueError("No run of the sweep fits its NFE budgets; raise the budgets.")
    return runs, skipped


def _on_schedules(config: RunConfig, steps: int, schedules: Sequence[str], denoiser: Optional[Denoiser],
                  skipped: list[str]) -> list[RunConfig]:
    """The run on each schedule of the axis (just the run itself without one)."""
    if list(schedules) == ["default"]:
        return [config]
    out = []
    for spec in schedules:
        try:
            out.append(schedule_config(spec, config, steps, denoiser))
        except ValueError as err:
            skipped.append(f"{config.solver} at {steps} steps: {err}")
    return out


def series_label(config: RunConfig) -> str:
    """A sweep series: the solver, and the schedule when the sweep has a schedule axis."""
    return config.solver if config.schedule_label is None else f"{config.solver} @ {config.schedule_label}"


def _run(denoiser: Denoiser, config: RunConfig, noise: torch.Tensor, plan: Any = None) -> tuple[Trajectory, float]:
    recorder = TrajectoryRecorder(config, getattr(denoiser, "name", "denoiser"), record_evals=False)
    start = time.perf_counter()
    for event in sample_steps(denoiser, config, noise, record_evals=False, plan=plan):
        recorder.add(event)
    return recorder.finish(), time.perf_counter() - start


def exact_final(denoiser: GaussianDenoiser, trajectory: Trajectory) -> torch.Tensor:
    """The exact PF-ODE solution at the run's final σ from its own initial state (float64)."""
    y0 = trajectory.noise.to(torch.float64) * float(trajectory.sigma[0])
    return denoiser.exact(y0, float(trajectory.sigma[0]), float(trajectory.sigma[-1]))


def sweep_events(
    denoiser: Denoiser,
    base: RunConfig,
    solvers: Sequence[str],
    budgets: Sequence[int],
    reference_rtol: Optional[float] = None,
    schedules: Sequence[str] = ("default",),
) -> Iterator[SweepProgress]:
    """Run the sweep, yielding after every run (stop iterating to cancel); the last item carries the result.

    With more than the default schedule, every solver runs on each (``schedule_axis``) and
    the series are named "solver @ schedule".
    """
    runs, skipped = sweep_configs(base, solvers, budgets, schedules, denoiser)
    noise = shared_noise(denoiser, base.seed, base.batch)
    exact = isinstance(denoiser, GaussianDenoiser)
    series = list(dict.fromkeys(series_label(c) for _, c in runs))
    result = SweepResult(base, series, reference_kind="exact solution" if exact else "reference solver", skipped=skipped)
    total = len(runs) + (0 if exact else 1)
    ref: Optional[Trajectory] = None
    done = 0
    if not exact:
        yield SweepProgress(done, total, message="reference run")
        plans = [make_plan(denoiser, c) for _, c in runs]
        ends = [s for p in plans for s in _end_sigmas(p)]
        plan = reference_plan(plans[0], plans, ends)
        config = reference_config(base, reference_rtol or REFERENCE_RTOL).replace(final=plan.final)
        ref, _ = _run(denoiser, config, noise, plan)
        done += 1
    for budget, config in runs:
        traj, seconds = _run(denoiser, config, noise)
        if exact:
            error = rmse(traj.samples, exact_final(denoiser, traj))
        else:
            j = match_sigma(ref.sigma, float(traj.sigma[-1]))
            error = math.nan if j is None else rmse(data_space(traj)[-1], data_space(ref)[j])
        point = SweepPoint(series_label(config), budget, traj.num_steps, traj.nfe, error, seconds)
        result.points.append(point)
        done += 1
        yield SweepProgress(done, total, point, result=result if done == total else None)


def _end_sigmas(plan: Any) -> list[float]:
    """σ at the start, at the last positive grid point and at the end (0 for a final step to σ = 0)."""
    positive = [float(plan.process.sigma(t)) for t in plan.t if t > 0]
    return [positive[0], positive[-1]] + ([0.0] if plan.t[-1] == 0 or plan.final == "denoise" else [])


def run_sweep(
    denoiser: Denoiser, base: RunConfig, solvers: Sequence[str], budgets: Sequence[int], reference_rtol: Optional[float] = None,
    schedules: Sequence[str] = ("default",),
) -> SweepResult:
    """Run the whole sweep and return its points."""
    result: Optional[SweepResult] = None
    for progress in sweep_events(denoiser, base, solvers, budgets, reference_rtol, schedules):
        result = progress.result or result
    assert result is not None
    return result
