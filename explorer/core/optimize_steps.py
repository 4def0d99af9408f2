"""Steps optimized for a model: the N-step σ grid that minimizes a solver's error (issue #12).

As GITS (Chen et al. 2024) and "optimal stepsize" distillation do: one reference
trajectory (RK45, float64) of a batch of samples is recorded at every point of a fine
candidate grid; the cost of a step from candidate j to candidate k is the RMS distance
between the solver's step taken from the reference state at j and the reference state at
k; dynamic programming then picks the N steps from σ_max to σ_min whose summed cost is
smallest.

- One-step solvers (euler, heun, ddim, DPM-Solver-1/2/3, ++2S): each candidate step is the
  registered solver itself run over the one-step grid (σ_j, σ_k) from the reference state,
  so whatever evaluations the solver makes inside a step are made.
- Multistep solvers of history one (DPM-Solver-2M, ++2M): the step from j to k also uses
  the model output at the previous node i, taken at the reference state (teacher forcing),
  and the DP runs over pairs (i, j).
- iPNDM (fixed-step Adams–Bashforth in σ, history up to three): the step from j to k uses
  ε̂ at the reference states of the nodes before j as well. The DP still runs over pairs
  (i, j); the older nodes are those of the best path into (i, j). A step's cost then depends
  on more than the state, so this DP is a close approximation, not the exact optimum; the
  default grid's cost is computed the same way, and the result is kept only if it is lower.

With ``final = zero`` the grid's last step goes from σ_min to 0 as usual; it is the same
for every grid and left out of the optimization.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.discretization import time_grid
from explorer.core.grids import Grid
from explorer.core.latents import NoiseStreams, seeds_for
from explorer.core.plan import plan_run
from explorer.core.sampling import make_plan, sample_steps
from explorer.core.solvers import get_solver
from explorer.core.solvers.context import Plan
from explorer.core.solvers.dpm import Point
from explorer.core.solvers.multistep import _step as multistep_step
from explorer.core.solvers.pndm import AB_WEIGHTS

ONE_STEP = ("euler", "heun", "ddim", "dpm-solver-1", "dpm-solver-2", "dpm-solver-3", "dpm-solver++2s")
HISTORY_ONE = ("dpm-solver-2m", "dpm-solver++2m")
ADAMS = ("ipndm",)  # fixed-step Adams–Bashforth: the history of the path into each pair
HISTORY = HISTORY_ONE + ADAMS
DEFAULT_CANDIDATES = 48
DEFAULT_BATCH = 256

Progress = Optional[Callable[[str], None]]


@dataclass
class Optimized:
    """The optimized grid; the summed step cost of it and of the default grid (the DP's objective);
    and the RMS error at σ_min of a whole run on each, against the reference (what a user sees)."""

    grid: Grid
    cost: float
    default_cost: float
    rmse: float = math.nan
    default_rmse: float = math.nan


def check_solver(name: str) -> None:
    get_solver(name)
    if name not in ONE_STEP + HISTORY:
        raise ValueError(f"Steps can be optimized for {', '.join(ONE_STEP + HISTORY)}, not for {name}.")


def optimize_steps(
    denoiser: Denoiser,
    config: RunConfig,
    steps: int,
    candidates: int = DEFAULT_CANDIDATES,
    batch: int = DEFAULT_BATCH,
    rtol: float = 1e-7,
    progress: Progress = None,
) -> Optimized:
    """The ``steps``-step grid minimizing ``config.solver``'s summed step error on ``denoiser``."""
    check_solver(config.solver)
    inner = steps - 1 if config.final == "zero" else steps  # steps between σ_max and σ_min
    if inner < 1:
        raise ValueError(f"{steps} step(s) leave nothing to optimize with final={config.final}.")
    if candidates < inner + 1:
        raise ValueError(f"{candidates} candidate σ's cannot hold a grid of {inner} steps; use more candidates.")
    config = config.replace(dtype="float64", batch=batch, churn=0.0, sigmas=None, timesteps=None, init_sigma=None, fast=False,
                            orders=None, steps=steps, nfe=None)
    base = make_plan(denoiser, config)
    lo, hi = base.sigma_range
    fine = time_grid(config.disc, candidates, base.process, lo, hi, config.rho, None, config.epsilon_s).tolist()
    own = [t for t in base.t if t > 0][: inner + 1]
    cand_t = sorted(set(fine) | set(own), reverse=True)  # the default grid is one of the DP's paths
    say = progress or (lambda _m: None)
    say(f"reference trajectory through {candidates} candidate σ's")
    states = _reference_states(denoiser, config, base, cand_t, rtol)
    ctx = _Steps(denoiser, config, base, cand_t, states)
    say("step costs")
    orders = get_solver(config.solver).step_orders(inner, config.lower_order_final, config.options)
    if config.solver in HISTORY:
        choice, cost = _dp_history(ctx, inner, orders)
    else:
        choice, cost = _dp_one_step(ctx, inner)
    default_path = [cand_t.index(t) for t in own]
    default = _path_cost(ctx, default_path, orders)
    run_error, default_error = ctx.run_error(choice), ctx.run_error(default_path)
    if run_error > default_error:  # summed step costs are a proxy: never hand back a grid that runs worse
        say(f"the DP's grid runs worse than the default ({run_error:.4g} > {default_error:.4g}); keeping the default")
        choice, cost, run_error = default_path, default, default_error
    sig = [float(base.process.sigma(cand_t[j])) for j in choice] + ([0.0] if config.final == "zero" else [])
    grid = Grid(tuple(sig), source=f"optimized for {config.solver}, {steps} steps, {getattr(denoiser, 'name', 'model')}",
                info={"solver": config.solver, "steps": steps, "candidates": len(cand_t), "batch": batch,
                      "cost": cost, "default_cost": default, "rmse": run_error, "default_rmse": default_error,
                      "disc": config.disc})
    return Optimized(grid, cost, default, run_error, default_error)


def _reference_states(denoiser: Denoiser, config: RunConfig, base: Plan, cand_t: list[float], rtol: float) -> torch.Tensor:
    """[M, B, *shape] reference states (scaled space, float64) at the candidate times."""
    ref_cfg = config.replace(solver="reference", steps=None, rtol=rtol, atol=None, final="sigma_min")
    plan = Plan(base.process, base.sigma_range, list(cand_t), None, "sigma_min", None, base.disc)
    noise = NoiseStreams(seeds_for(config.seed, config.batch)).randn(denoiser.shape)
    xs = [ev.x.to(torch.float64) for ev in sample_steps(denoiser, ref_cfg, noise, record_evals=False, plan=plan)]
    return torch.stack(xs)


class _Steps:
    """Step costs between candidates, computed once each."""

    def __init__(self, denoiser: Denoiser, config: RunConfig, base: Plan, cand_t: list[float], states: torch.Tensor):
        self.denoiser, self.config, self.base = denoiser, config, base
        self.t, self.x = cand_t, states
        self.scale = [float(base.process.s(t)) for t in cand_t]
        self.sigma = [float(base.process.sigma(t)) for t in cand_t]
        self._one: dict[tuple[int, int], float] = {}
        self._two: dict[tuple[int, int, int], float] = {}
        self._adams: dict[tuple[tuple[int, ...], int], float] = {}
        self._denoised: dict[int, torch.Tensor] = {}

    def error(self, x: torch.Tensor, k: int) -> float:
        return float(((x - self.x[k]) / self.scale[k]).square().mean().sqrt())

    def one_step(self, j: int, k: int) -> float:
        """The registered solver's single step from the reference state at j to σ_k."""
        hit = self._one.get((j, k))
        if hit is None:
            cfg = self.config.replace(sigmas=(self.sigma[j], self.sigma[k]), init_sigma=1.0, final="sigma_min",
                                      steps=1, orders=(1,) if self.config.solver in HISTORY else None)
            last = None
            for last in sample_steps(self.denoiser, cfg, self.x[j], record_evals=False, plan=self._plan(cfg, j, k)):
                pass
            hit = self._one[(j, k)] = self.error(last.x.to(torch.float64), k)
        return hit

    def run_error(self, path: list[int]) -> float:
        """RMS error at σ_min of the solver's whole run through the candidates ``path`` (from the
        reference's start, its own states: no teacher forcing), against the reference."""
        info, steps = get_solver(self.config.solver), len(path) - 1
        cfg = self.config.replace(sigmas=tuple(self.sigma[j] for j in path), init_sigma=1.0, final="sigma_min", steps=steps)
        plan = Plan(self.base.process, self.base.sigma_range, [self.t[j] for j in path],
                    info.step_orders(steps, cfg.lower_order_final, cfg.options), "sigma_min",
                    info.nfe(steps, False, cfg.options), self.base.disc)
        last = None
        for last in sample_steps(self.denoiser, cfg, self.x[0], record_evals=False, plan=plan):
            pass
        return self.error(last.x.to(torch.float64), path[-1])

    def _plan(self, cfg: RunConfig, j: int, k: int) -> Plan:
        """A one-step plan in the base process (explicit grids would rebuild the process from their own range)."""
        info = get_solver(cfg.solver)
        orders = list(cfg.orders) if cfg.orders else info.step_orders(1, False)
        return Plan(self.base.process, self.base.sigma_range, [self.t[j], self.t[k]], orders, "sigma_min",
                    info.nfe(1, False, cfg.options), self.base.disc)

    def denoised(self, j: int) -> torch.Tensor:
        if j not in self._denoised:
            sig = torch.full((self.x.shape[1],), self.sigma[j], dtype=torch.float64)
            with torch.no_grad():
                self._denoised[j] = self.denoiser(self.x[j] / self.scale[j], sig).to(torch.float64)
        return self._denoised[j]

    def point(self, j: int) -> Point:
        s, sig = self.scale[j], self.sigma[j]
        return Point(self.t[j], s, s * sig, -math.log(sig))

    def history_step(self, i: int, j: int, k: int) -> float:
        """DPM-Solver-(++)2M's second-order step j → k with the model output at i (teacher forced)."""
        hit = self._two.get((i, j, k))
        if hit is not None:
            return hit
        data_form = self.config.solver == "dpm-solver++2m"
        pts = [self.point(i), self.point(j)]
        ms = [self._model(i, data_form), self._model(j, data_form)]
        x = multistep_step(self.x[j], 2, pts, ms, self.point(k), data_form, 1.0)
        hit = self._two[(i, j, k)] = self.error(x, k)
        return hit

    def adams_step(self, nodes: tuple[int, ...], k: int) -> float:
        """iPNDM's fixed-step Adams–Bashforth step from the last of ``nodes`` to k, with ε̂ at the
        reference states of all of them (newest last; as many as the step's order)."""
        hit = self._adams.get((nodes, k))
        if hit is not None:
            return hit
        j = nodes[-1]
        y = self.x[j] / self.scale[j]
        slope = sum(w * self._model(n, False) for w, n in zip(AB_WEIGHTS[len(nodes)], reversed(nodes)))
        x = self.scale[k] * (y + (self.sigma[k] - self.sigma[j]) * slope)
        hit = self._adams[(nodes, k)] = self.error(x, k)
        return hit

    def step(self, path: tuple[int, ...], k: int, order: int) -> float:
        """The cost of the step from the end of ``path`` to k at ``order`` (the solver's rule)."""
        if self.config.solver in ADAMS:
            return self.adams_step(path[-min(order, len(path)):], k)
        if order >= 2 and len(path) >= 2:
            return self.history_step(path[-2], path[-1], k)
        return self.one_step(path[-1], k)

    def _model(self, j: int, data_form: bool) -> torch.Tensor:
        d = self.denoised(j)
        if data_form:
            return d
        p = self.point(j)
        return (self.x[j] - p.alpha * d) / p.sigma_bar


def _dp_one_step(ctx: _Steps, n: int) -> tuple[list[int], float]:
    """Exactly n steps from candidate 0 to the last, minimizing the summed one-step costs."""
    m = len(ctx.t)
    inf = math.inf
    best = [[inf] * m for _ in range(n + 1)]
    back = [[-1] * m for _ in range(n + 1)]
    best[0][0] = 0.0
    for step in range(1, n + 1):
        for k in range(step, m - (n - step)):
            for j in range(step - 1, k):
                if best[step - 1][j] == inf:
                    continue
                c = best[step - 1][j] + ctx.one_step(j, k)
                if c < best[step][k]:
                    best[step][k], back[step][k] = c, j
    path = [m - 1]
    for step in range(n, 0, -1):
        path.append(back[step][path[-1]])
    return path[::-1], best[n][m - 1]


def _dp_history(ctx: _Steps, n: int, orders: Optional[list[int]]) -> tuple[list[int], float]:
    """As :func:`_dp_one_step` over pairs (previous, current), for solvers with history; each
    pair keeps its best path, whose older nodes an Adams step uses."""
    m = len(ctx.t)
    order = (lambda step: orders[step]) if orders else (lambda step: 1)
    layer: dict[tuple[int, int], tuple[float, tuple[int, ...]]] = {
        (0, k): (ctx.step((0,), k, order(0)), (0, k)) for k in range(1, m - (n - 1))}
    for step in range(1, n):
        nxt: dict[tuple[int, int], tuple[float, tuple[int, ...]]] = {}
        for (_, j), (c0, path) in layer.items():
            for k in range(j + 1, m - (n - 1 - step)):
                c = c0 + ctx.step(path, k, order(step))
                if c < nxt.get((j, k), (math.inf,))[0]:
                    nxt[(j, k)] = (c, path + (k,))
        layer = nxt
    total, path = min(v for pair, v in layer.items() if pair[1] == m - 1)
    return list(path), total


def _path_cost(ctx: _Steps, path: list[int], orders: Optional[list[int]]) -> float:
    """The DP's summed cost of one given path (the default grid's)."""
    if ctx.config.solver not in HISTORY:
        return sum(ctx.one_step(j, k) for j, k in zip(path, path[1:]))
    return sum(ctx.step(tuple(path[: n + 1]), path[n + 1], orders[n] if orders else 1) for n in range(len(path) - 1))


def default_grid(denoiser: Denoiser, config: RunConfig) -> Grid:
    """The config's own grid as a Grid (for saving next to an optimized one)."""
    plan = plan_run(config, (denoiser.sigma_min, denoiser.sigma_max))
    return Grid(tuple(float(plan.process.sigma(t)) if t > 0 else 0.0 for t in plan.t), source=f"default {config.disc}")
