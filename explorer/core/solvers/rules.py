"""Step rules: how a solver lays out its grid and spends evaluations (SPEC §2, §4).

A solver's :class:`SolverInfo` names one rule instead of a family string: the rule says
how NFE follows from the step count, which order each step has, how an NFE budget becomes
steps and which time points the plan holds. ``plan_run`` only asks the rule; a solver
with an unusual layout (Restart's extra NFE, DPM-Solver-fast's budget) brings its own.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

from explorer.core.solvers.options import Option

Options = Mapping[str, Any]


@dataclass(frozen=True)
class GridRequest:
    """What ``plan_run`` hands a rule: the grid maker and the run's end conventions."""

    grid: Callable[[int], list[float]]  # n intervals → n + 1 decreasing times
    t_max: float  # t of the nominal σ_max
    t_min: float  # t of the nominal σ_min
    final: str
    disc: str
    lower_order_final: bool
    options: Options
    sigma: Callable[[float], float] = float  # σ(t) of the run's process (rules that place extra points use it)

    @property
    def to_zero(self) -> bool:
        return self.final == "zero"

    @property
    def tail(self) -> list[float]:
        return [0.0] if self.to_zero else []


Layout = tuple[list[float], Optional[list[int]], Optional[int]]  # times, per-step orders, NFE of the whole run


@dataclass(frozen=True)
class PerStep:
    """A fixed number of evaluations per step; the step to σ = 0 costs one (Euler, Heun, DDIM…)."""

    evals_per_step: int = 1
    adaptive = False  # chooses its own steps: no NFE in advance, no budget
    fixed_grid = True  # the plan's grid is the steps the run takes (progress can count them)
    lower_order_final = False  # whether RunConfig.lower_order_final changes anything

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        k = self.evals_per_step
        return k * (steps - 1) + 1 if to_zero and k > 1 else k * steps

    def orders(self, steps: int, lower_order_final: bool, options: Options = {}) -> Optional[list[int]]:  # noqa: B006 - read only
        return None

    def applies_lower_order_final(self, options: Options) -> bool:
        """Whether RunConfig.lower_order_final changes anything with these options (the GUI asks)."""
        return self.lower_order_final

    def nfe_rule(self) -> str:
        if self.evals_per_step == 1:
            return "N"
        k = self.evals_per_step
        return f"{k}N−{k - 1} (final zero), {k}N otherwise"

    def steps_for_budget(self, budget: int, final: str, options: Options) -> Optional[int]:
        """The largest step count whose NFE fits ``budget`` (None: none fits)."""
        extra = 1 if final == "denoise" else 0
        best = None
        for n in itertools.count(1):
            if self.nfe(n, final == "zero", options) + extra > budget:
                return best
            best = n
        return best  # pragma: no cover - itertools.count never ends

    def layout(self, steps: Optional[int], req: GridRequest) -> Layout:
        assert steps is not None
        t = req.grid(steps if req.to_zero else steps + 1) + req.tail
        nfe = self.nfe(steps, req.to_zero, req.options)
        extra = 1 if req.final == "denoise" else 0
        return t, self.orders(steps, req.lower_order_final, req.options), None if nfe is None else nfe + extra


@dataclass(frozen=True)
class Singlestep(PerStep):
    """Every step of one order k with k evaluations (DPM-Solver-k, DPM-Solver++(2S)).

    With the ``nodes`` option at "grid" the inner nodes are the grid's own points instead:
    the grid falls into blocks of k intervals whose steps have orders 1, 2, …, k, each
    step one evaluation (diffusers' DPMSolverSinglestepScheduler; see :func:`grid_block_orders`).
    """

    order: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "evals_per_step", self.order)

    @staticmethod
    def on_grid(options: Options) -> bool:
        """Whether the inner nodes are grid points (one evaluation per step)."""
        return options.get("nodes") == "grid"

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        return steps if self.on_grid(options) else PerStep.nfe(self, steps, to_zero, options)

    def nfe_rule(self) -> str:
        rule = PerStep.nfe_rule(self)
        return rule + "; N with nodes=grid" if self.order > 1 else rule

    def orders(self, steps: int, lower_order_final: bool, options: Options = {}) -> Optional[list[int]]:  # noqa: B006
        if self.on_grid(options):
            return grid_block_orders(steps, self.order, lower_order_final)
        return [self.order] * steps

    def applies_lower_order_final(self, options: Options) -> bool:
        return self.order > 1 and self.on_grid(options)

    def layout(self, steps: Optional[int], req: GridRequest) -> Layout:
        t, orders, nfe = PerStep.layout(self, steps, req)
        if orders and req.to_zero and self.on_grid(req.options):
            orders[-1] = 1  # the step to σ = 0 is first order (SPEC §2): a block of its own
        return t, orders, nfe


def grid_block_orders(steps: int, order: int, lower_order_final: bool, to_zero: bool = False) -> list[int]:
    """Per-step orders of singlestep blocks laid on the grid itself.

    The N steps fall into blocks of ``order`` grid intervals, then one shorter block for the
    remainder; a block of k intervals is the steps of orders 1, 2, …, k, all starting from
    the block's first state. ``lower_order_final`` splits a last block of full order k into
    k − 1 and 1 (a shorter block already ends a run whose N is not a multiple of k), and a
    last step to σ = 0 is a block of its own. This is diffusers' ``get_order_list`` together
    with its two overrides (lower_order_final switched on for such N and for final σ = 0).
    """
    full, rest = divmod(steps, order)
    blocks = [order] * full + ([rest] if rest else [])
    if lower_order_final and not rest and order > 1 and blocks:
        blocks[-1:] = [order - 1, 1]
    orders = [k for size in blocks for k in range(1, size + 1)]
    if to_zero and orders:
        orders[-1] = 1
    return orders


# When multistep solvers lower their order over the last steps (RunConfig.lower_order_final):
# the official DPM-Solver does it for runs of fewer than 10 steps, diffusers'
# DPMSolverMultistep and DEISMultistep schedulers for fewer than 15, UniPC always.
FINAL_RULES = {"dpm-solver-10": 10, "diffusers-15": 15, "always": math.inf, "never": 0}


def final_rule_option(default: str) -> Option:
    """The ``final_rule`` option of a multistep solver, with that solver's default."""
    return Option("final_rule", str, default, "which runs get lower-order final steps (with lower_order_final): "
                  "dpm-solver-10 = fewer than 10 steps (official DPM-Solver), diffusers-15 = fewer than 15 "
                  "(diffusers' DPMSolverMultistep, DEISMultistep), always (UniPC)", "lower-order final",
                  choices=("dpm-solver-10", "diffusers-15", "always"))


@dataclass(frozen=True)
class Multistep(PerStep):
    """One evaluation per step; the order ramps up 1, 2, … and, with lower-order final
    steps, ramps down over the last steps of short runs (``final_rule``: a key of
    :data:`FINAL_RULES`, overridden by the solver's option of that name). A solver whose
    order is an option names it in ``order_option``."""

    order: int = 2
    final_rule: str = "dpm-solver-10"
    order_option: str = ""
    lower_order_final = True

    def orders(self, steps: int, lower_order_final: bool, options: Options = {}) -> Optional[list[int]]:  # noqa: B006
        top = int(options.get(self.order_option, self.order)) if self.order_option else self.order
        orders = [min(top, i + 1) for i in range(steps)]
        if lower_order_final and steps < FINAL_RULES[options.get("final_rule", self.final_rule)]:
            orders = [min(o, steps - i) for i, o in enumerate(orders)]
        return orders


@dataclass(frozen=True)
class Fast(PerStep):
    """DPM-Solver-fast: the NFE budget is spent exactly with orders 3,…,3,2,1 (SPEC §4)."""

    order: int = 3

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        return steps

    def nfe_rule(self) -> str:
        return "NFE as asked (steps = NFE)"

    def steps_for_budget(self, budget: int, final: str, options: Options) -> Optional[int]:
        return budget

    def layout(self, steps: Optional[int], req: GridRequest) -> Layout:
        assert steps is not None
        budget = steps - (0 if req.final == "sigma_min" else 1)
        orders = fast_orders(budget)
        if not orders:
            outer = req.grid(1)
        elif req.disc == "logsnr":
            outer = req.grid(len(orders) + 1)
        else:
            full = req.grid(budget + 1)
            outer = [full[j] for j in itertools.accumulate([0] + orders)]
        return outer + req.tail, orders + ([1] if req.to_zero else []), steps  # the budget, spent exactly


@dataclass(frozen=True)
class Adaptive(PerStep):
    """Chooses its own steps between σ_max and σ_min; NFE is counted during the run."""

    adaptive = True
    fixed_grid = False

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        return None

    def nfe_rule(self) -> str:
        return "adaptive (counted during the run)"

    def layout(self, steps: Optional[int], req: GridRequest) -> Layout:
        return [req.t_max, req.t_min] + req.tail, None, None


@dataclass(frozen=True)
class AdaptiveOnGrid(Adaptive):
    """Integrates adaptively between the points of an ordinary grid (the RK45 reference)."""

    fixed_grid = True

    def layout(self, steps: Optional[int], req: GridRequest) -> Layout:
        t, orders, _ = PerStep.layout(self, steps or 1, req)
        return t, orders, None


def fast_orders(budget: int) -> list[int]:
    """DPM-Solver-fast's orders for ``budget`` evaluations (SPEC §4)."""
    if budget <= 0:
        return []
    k = budget // 3 + 1
    rem = budget % 3
    if rem == 0:
        return [3] * (k - 2) + [2, 1]
    if rem == 1:
        return [3] * (k - 1) + [1]
    return [3] * (k - 1) + [2]


# --------------------------------------------------------------- rules of single solvers
# Here rather than beside their solvers so that the registry reads them without torch.


@dataclass(frozen=True)
class PLMSRule(Multistep):
    """PLMS spends one extra evaluation on its Heun first step; orders 2, 2, 3, 4, 4, …"""

    order: int = 4
    final_rule: str = "never"

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        return steps + (0 if to_zero and steps == 1 else 1)

    def nfe_rule(self) -> str:
        return "N+1 (Heun first step)"

    def orders(self, steps: int, lower_order_final: bool, options: Options = {}) -> Optional[list[int]]:  # noqa: B006
        return [2] + [min(4, i + 1) for i in range(1, steps)]


PRK_STEPS = 3
PRK_SPAN = {"midpoint": 1, "grid": 2}  # grid intervals one Runge–Kutta step covers, by PNDM's prk_nodes


def prk_steps(steps: int, to_zero: bool, options: Options) -> int:
    """How many Runge–Kutta steps PNDM starts with: up to three, none ending at σ = 0 (its
    last evaluation would be there); with prk_nodes=grid each covers two grid intervals."""
    span = PRK_SPAN[options.get("prk_nodes", "midpoint")]
    return min(PRK_STEPS, (steps - (1 if to_zero else 0)) // span)


@dataclass(frozen=True)
class PNDMRule(Multistep):
    """Three pseudo Runge–Kutta steps of 4 evaluations, then one per step; order 4 throughout.

    A Runge–Kutta step spends 4 evaluations where one multistep step per interval would
    spend ``span``, so NFE = N + (4 − span)·(Runge–Kutta steps)."""

    order: int = 4
    final_rule: str = "never"

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        span = PRK_SPAN[options.get("prk_nodes", "midpoint")]
        return steps + (4 - span) * prk_steps(steps, to_zero, options)

    def nfe_rule(self) -> str:
        return "N+9 (three Runge–Kutta steps first; N+6 with prk_nodes=grid)"

    def orders(self, steps: int, lower_order_final: bool, options: Options = {}) -> Optional[list[int]]:  # noqa: B006
        return [4] * steps


@dataclass(frozen=True)
class DPM2Rule(PerStep):
    """DPM-2: two evaluations a step, one on the step to σ = 0. With ``midpoint=grid`` the
    explicit σ grid holds every step's midpoint as a point of its own, so each of its
    intervals (Euler to a midpoint, or the full step that ends one) costs one evaluation."""

    evals_per_step: int = 2

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        if options.get("midpoint") == "grid":
            return steps
        return PerStep.nfe(self, steps, to_zero, options)

    def nfe_rule(self) -> str:
        return "2N−1 (final zero), 2N otherwise; midpoint=grid: one per grid interval"

    def layout(self, steps: Optional[int], req: GridRequest) -> Layout:
        if req.options.get("midpoint") == "grid":
            raise ValueError("DPM-2 with midpoint=grid takes its midpoints from an explicit σ grid (--sigmas, a grid "
                             "file or --preset diffusers), not from a discretization; use midpoint=geometric.")
        return PerStep.layout(self, steps, req)


class RestartInterval(NamedTuple):
    """One restart interval: K times, jump from the grid point nearest σ_min up to σ_max and
    take ``steps`` Heun steps back down."""

    sigma_min: float
    sigma_max: float
    k: int
    steps: int

    @property
    def nfe(self) -> int:
        return 2 * self.k * self.steps


def restart_intervals(options: Options) -> list[RestartInterval]:
    """The run's intervals: the ``restart_intervals`` list, else the single interval of
    ``restart_min``, ``restart_max``, ``restart_k`` and ``restart_steps``."""
    listed = options.get("restart_intervals")
    if listed is not None:
        return [RestartInterval(*item) for item in listed]
    return [RestartInterval(options["restart_min"], options["restart_max"], options["restart_k"], options["restart_steps"])]


def restart_schedule(t: Sequence[float], sigma: Callable[[float], float], options: Options) -> list[tuple[int, RestartInterval]]:
    """(main-grid index, interval) of every restart the run makes, in the order it makes them.

    Each interval's σ_min snaps to the nearest grid point after the first (in log σ; σ = 0
    never). An interval with K = 0, or whose snapped point is not below its σ_max, is left
    out; intervals sharing a point run there in the order given.
    """
    candidates = [j for j in range(1, len(t)) if t[j] > 0]
    if not candidates:
        return []
    placed = []
    for interval in restart_intervals(options):
        j = min(candidates, key=lambda k: abs(math.log(sigma(t[k])) - math.log(interval.sigma_min)))
        if interval.k > 0 and interval.sigma_max > sigma(t[j]):
            placed.append((j, interval))
    return sorted(placed, key=lambda pair: pair[0])  # stable: list order at a shared point


@dataclass(frozen=True)
class RestartRule(PerStep):
    """Heun's 2N − 1 evaluations plus 2 · steps for each of an interval's K restarts."""

    evals_per_step: int = 2
    fixed_grid = False  # the jumps and restart steps add states beyond the plan's grid

    def nfe_rule(self) -> str:
        return "2N−1 + 2·K·steps per interval (final zero)"

    def nfe(self, steps: int, to_zero: bool, options: Options) -> Optional[int]:
        """Without the grid: every interval counted (the plan leaves out those the grid can't place)."""
        base = PerStep.nfe(self, steps, to_zero, options) or 0
        has_interior = steps >= (2 if to_zero else 1)
        return base + (sum(i.nfe for i in restart_intervals(options)) if has_interior else 0)

    def layout(self, steps: Optional[int], req: GridRequest) -> Layout:
        t, orders, _ = PerStep.layout(self, steps, req)
        nfe = PerStep.nfe(self, steps or 1, req.to_zero, req.options) or 0
        nfe += sum(interval.nfe for _, interval in restart_schedule(t, req.sigma, req.options))
        return t, orders, nfe + (1 if req.final == "denoise" else 0)
