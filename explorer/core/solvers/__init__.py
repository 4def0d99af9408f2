"""The solver registry: one function per solver, one line per registration.

A solver is ``fn(ctx: SolverContext) -> Iterator[StepEvent]``. Its :class:`SolverInfo`
declares everything else: its step rule (how NFE follows from the step count and which
order each step has, so the GUI can show the NFE before a run and the CLI can turn an
NFE budget into steps), its own options (type, default, bounds, help), its colour and
its expected order. Adding a solver is one function and one ``register`` call; the
config, the GUI's solver section, the CLI flags and the order tests pick it up from
:data:`SOLVERS`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional

from explorer.core.solvers.options import (
    ADAPTIVE_ATOL, ADAPTIVE_RTOL, BASIS, COMBINE, CORRECTOR_OFF, EDM_CHURN, ETA, MAX_ORDER, MIDPOINT, MIN_ALPHA, NODES,
    PRK_NODES, REFERENCE_RTOL, RESTART_OPTIONS, S_NOISE, SOLVER_TYPE, UNIPC_OPTIONS, Option, check_churn_window,
    check_restart_interval, resolve,
)
from explorer.core.solvers.rules import (
    Adaptive, AdaptiveOnGrid, DPM2Rule, Fast, Multistep, PerStep, PLMSRule, PNDMRule, RestartRule, Singlestep, final_rule_option,
)

if TYPE_CHECKING:
    from explorer.core.events import StepEvent
    from explorer.core.solvers.context import SolverContext

SolverFn = Callable[["SolverContext"], Iterator["StepEvent"]]
OptionsCheck = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Deferred:
    """A solver function named by ``"module.function"`` (a module of this package), imported
    on its first call: the registry, and so ``--help``, ``solvers`` and config validation,
    need no torch, and scipy comes in only when the reference solver runs."""

    target: str

    def resolve(self) -> SolverFn:
        module, name = self.target.rsplit(".", 1)
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)

    def __call__(self, ctx: SolverContext) -> Iterator[StepEvent]:
        return self.resolve()(ctx)


def __getattr__(name: str) -> Any:
    """``SolverContext`` stays importable from here without importing torch up front."""
    if name == "SolverContext":
        from explorer.core.solvers.context import SolverContext

        return SolverContext
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# One colour per solver, the same in every view and export. Solvers that declare none get
# the next colour of this palette in registry order, chosen so that the solvers usually
# compared (euler, heun, dpm-solver-2/-3, ++2m, 3m-taylor, lms) differ at a glance.
PALETTE = (
    "#0072B2", "#D55E00", "#009E73", "#999999", "#E69F00", "#56B4E9", "#8C564B", "#BCBD22", "#17BECF",
    "#CC79A7", "#AEC7E8", "#9467BD", "#98DF8A", "#D62728", "#FF9896", "#2CA02C", "#000080", "#E377C2",
    "#FFBB78", "#7F7F7F",
)


@dataclass(frozen=True)
class SolverInfo:
    """What the rest of the program needs to know about a solver, declared in one place.

    Attributes:
        name: registry key (CLI ``--solver``).
        fn: the solver function (the registry's own are :class:`Deferred`, imported when first run).
        order: the global convergence order expected on a smooth ODE (SPEC §5); the order
            tests measure it on the exact Gaussian.
        rule: the step rule (grid, NFE, per-step orders); see :mod:`explorer.core.solvers.rules`.
        options: the solver's own settings, with defaults, bounds and help.
        check: cross-option validation beyond each option's bounds (e.g. S_min ≤ S_max).
        stochastic: draws noise during the run (with its options at their defaults).
        color: display colour (#RRGGBB); empty = the next palette colour in registry order.
        summary: one line for ``diffusion-explorer solvers`` and the GUI.
        order_grid: discretization on which ``order`` shows at small N (the order tests use it).
        float64: runs in float64 whatever the run's dtype (the reference).
    """

    name: str
    fn: SolverFn = field(repr=False)
    order: int
    rule: PerStep = PerStep()
    options: tuple[Option, ...] = ()
    check: Optional[OptionsCheck] = field(default=None, repr=False, compare=False)
    stochastic: bool = False
    color: str = ""
    summary: str = ""
    order_grid: str = "logsnr"
    float64: bool = False

    @property
    def adaptive(self) -> bool:
        """Chooses its own steps (NFE not known in advance)."""
        return self.rule.adaptive

    @property
    def evals_per_step(self) -> int:
        return self.rule.evals_per_step

    @property
    def family(self) -> str:
        """The former family string, for code written before step rules (read only; new code
        asks the rule)."""
        rule = self.rule
        if isinstance(rule, AdaptiveOnGrid):
            return "reference"
        for kind, name in ((Adaptive, "adaptive"), (Fast, "fast"), (Multistep, "multistep"), (Singlestep, "singlestep")):
            if isinstance(rule, kind):
                return name
        return "edm" if type(rule) is PerStep else "other"

    @property
    def churn(self) -> bool:
        """Whether the solver takes EDM's S_churn (the former flag)."""
        return "churn" in self.option_names

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise KeyError(f"{self.name} has no option {name!r}")

    @property
    def nfe_rule(self) -> str:
        """How NFE follows from N steps, in words."""
        return self.rule.nfe_rule()

    def nfe(self, steps: int, to_zero: bool, options: Optional[Mapping[str, Any]] = None) -> Optional[int]:
        """Evaluations of a run of ``steps`` steps (without final=denoise's extra one)."""
        return self.rule.nfe(steps, to_zero, self.resolve_options(options or {}))

    def step_orders(self, steps: int, lower_order_final: bool, options: Optional[Mapping[str, Any]] = None) -> Optional[list[int]]:
        """Per-step orders for singlestep and multistep solvers (SPEC §4)."""
        return self.rule.orders(steps, lower_order_final, self.resolve_options(options or {}))

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option of this solver, validated, defaults filled in (ValueError otherwise)."""
        values = resolve(self.name, self.options, given, declared_by())
        if self.check is not None:
            self.check(values)
        return values


SOLVERS: dict[str, SolverInfo] = {}


def register(info: SolverInfo) -> None:
    """Add (or replace) a solver; the CLI, the GUI and the tests read it from :data:`SOLVERS`."""
    SOLVERS[info.name] = info


def unregister(name: str) -> None:
    SOLVERS.pop(name, None)


def get_solver(name: str) -> SolverInfo:
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"Unknown solver {name!r}; choose one of {', '.join(SOLVERS)}.") from None


def declared_by() -> dict[str, list[str]]:
    """Option name → the solvers that declare it (for "applies to … only" messages)."""
    owners: dict[str, list[str]] = {}
    for info in SOLVERS.values():
        for opt in info.options:
            owners.setdefault(opt.name, []).append(info.name)
    return owners


def all_options() -> dict[str, Option]:
    """Every option name any solver declares, with its first declaration (CLI flags, GUI rows)."""
    found: dict[str, Option] = {}
    for info in SOLVERS.values():
        for opt in info.options:
            found.setdefault(opt.name, opt)
    return found


def carry_options(old: str, options: Mapping[str, Any], new: str) -> dict[str, Any]:
    """The options worth keeping when the solver changes from ``old`` to ``new``: those the
    new solver declares identically (same default, bounds and meaning)."""
    if old == new:
        return dict(options)
    before = {o.name: o for o in SOLVERS[old].options} if old in SOLVERS else {}
    after = get_solver(new)
    return {o.name: options[o.name] for o in after.options if o.name in options and before.get(o.name) == o}


def solver_color(name: str) -> str:
    """A solver's display colour: its declared one, else fixed by its place in the registry."""
    info = SOLVERS.get(name)
    if info is not None and info.color:
        return info.color
    names = [n for n, i in SOLVERS.items() if not i.color]
    index = names.index(name) if name in names else sum(map(ord, name))
    return PALETTE[index % len(PALETTE)]


ALPHA = Option("alpha", float, 1.0, "Heun's intermediate point t + αh (EDM Algorithm 1; 1 = trapezoid rule)", "α",
               low=MIN_ALPHA, high=1.0)
RTOL_12_23 = Option("rtol", float, ADAPTIVE_RTOL, "relative tolerance of the step-size control", "rtol", low=0.0, low_open=True)
ATOL_12_23 = Option("atol", float, ADAPTIVE_ATOL, "absolute tolerance of the step-size control", "atol", low=0.0, low_open=True)
RTOL_REF = Option("rtol", float, REFERENCE_RTOL, "relative tolerance of RK45", "rtol", low=0.0, low_open=True)
ATOL_REF = Option("atol", float, None, "absolute tolerance of RK45 (default rtol · 1e-2)", "atol", low=0.0, low_open=True, optional=True)
ANCESTRAL = (ETA, S_NOISE)
DDIM_ETA = Option("eta", float, 0.0, "η of DDIM: 0 deterministic, 1 DDPM's posterior variance", "η", low=0.0, high=1.0)
CLIP_X0 = Option("clip_x0", float, None, "clamp x̂₀ to ±r in each step while ε̂ stays the unclipped one's (diffusers' "
                 "DDIMScheduler clip_sample: no longer the ODE's step; none = off)", "clip x̂₀", low=0.0, low_open=True,
                 optional=True)
NODE2 = Option("node2", str, "official", "state at the second inner node of an order-3 step: official (φ₂ term, official "
               "DPM-Solver) or diffusers (midpoint term, DPMSolverSinglestepScheduler)", "node 2",
               choices=("official", "diffusers"))
SINGLESTEP_2 = (NODES, SOLVER_TYPE)
SINGLESTEP_3 = (NODES, NODE2, SOLVER_TYPE)
DPM_MULTI = (final_rule_option("dpm-solver-10"), CORRECTOR_OFF)
DPM_TYPED = (SOLVER_TYPE,) + DPM_MULTI  # solver_type: the second-order steps (3M's warm-up and lower-order end too)

CHURNED = dict(options=EDM_CHURN, check=check_churn_window, order_grid="edm")
register(SolverInfo("euler", Deferred("edm.euler"), 1, **CHURNED, summary="Euler in t (EDM Alg. 1; with churn, Alg. 2)"))
register(SolverInfo("heun", Deferred("edm.heun"), 2, PerStep(2), options=(ALPHA,) + EDM_CHURN, check=check_churn_window, order_grid="edm",
                    summary="Heun in t, α option (EDM Alg. 1; with churn, Alg. 2)"))
register(SolverInfo("ddim", Deferred("dpm.ddim"), 1, options=(DDIM_ETA, CLIP_X0), order_grid="edm", summary="DDIM (x̂₀ form; equals DPM-Solver-1; η > 0 stochastic)"))
register(SolverInfo("dpm-solver-1", Deferred("dpm.dpm_solver"), 1, Singlestep(order=1), summary="DPM-Solver-1 (noise prediction)"))
register(SolverInfo("dpm-solver-2", Deferred("dpm.dpm_solver"), 2, Singlestep(order=2), options=SINGLESTEP_2,
                    summary="DPM-Solver-2, singlestep, node r₁=½ (or the next grid point)"))
register(SolverInfo("dpm-solver-3", Deferred("dpm.dpm_solver"), 3, Singlestep(order=3), options=SINGLESTEP_3,
                    summary="DPM-Solver-3, singlestep, nodes ⅓, ⅔ (or the next grid points)"))
register(SolverInfo("dpm-solver-fast", Deferred("dpm.dpm_solver"), 3, Fast(), summary="DPM-Solver-fast: orders 3,…,3,2,1 for an NFE budget"))
register(SolverInfo("dpm-solver-12", Deferred("adaptive.dpm_solver_12"), 2, Adaptive(2), options=(RTOL_12_23, ATOL_12_23), summary="adaptive DPM-Solver-12 (rtol/atol)"))
register(SolverInfo("dpm-solver-23", Deferred("adaptive.dpm_solver_23"), 3, Adaptive(3), options=(RTOL_12_23, ATOL_12_23), summary="adaptive DPM-Solver-23 (rtol/atol)"))
register(SolverInfo("dpm-solver-2m", Deferred("multistep.dpm_solver_multistep"), 2, Multistep(order=2), options=DPM_TYPED, summary="DPM-Solver-2M, multistep, noise prediction"))
register(SolverInfo("dpm-solver-3m", Deferred("multistep.dpm_solver_multistep"), 2, Multistep(order=3), options=DPM_TYPED, summary="DPM-Solver-3M as the libraries (formally 2nd order)"))
register(SolverInfo("dpm-solver-3m-taylor", Deferred("multistep.dpm_solver_multistep_taylor"), 3, Multistep(order=3), options=DPM_MULTI, summary="DPM-Solver-3M with 2·D2 (3rd order)"))
register(SolverInfo("dpm-solver++2s", Deferred("dpm.dpm_solver_pp_singlestep"), 2, Singlestep(order=2), options=SINGLESTEP_2,
                    summary="DPM-Solver++(2S), data prediction, node r₁=½ (or the next grid point)"))
register(SolverInfo("dpm-solver++2m", Deferred("multistep.dpm_solver_pp_multistep"), 2, Multistep(order=2), options=DPM_TYPED, summary="DPM-Solver++(2M), data prediction"))
register(SolverInfo("dpm-solver++3m", Deferred("multistep.dpm_solver_pp_multistep"), 2, Multistep(order=3), options=DPM_TYPED, summary="DPM-Solver++(3M) as the libraries (formally 2nd order)"))
register(SolverInfo("dpm-solver++3m-taylor", Deferred("multistep.dpm_solver_pp_multistep_taylor"), 3, Multistep(order=3), options=DPM_MULTI, summary="DPM-Solver++(3M) with 2·D2 (3rd order)"))
register(SolverInfo("lms", Deferred("lms.lms"), 4, order_grid="edm", summary="linear multistep, order 4, in t (k-diffusion's lms for EDM)"))
register(SolverInfo("euler-ancestral", Deferred("ancestral.euler_ancestral"), 1, options=ANCESTRAL, stochastic=True, summary="Euler ancestral (η)"))
register(SolverInfo("dpm-solver++2m-sde", Deferred("multistep.dpm_solver_pp_2m_sde"), 1, Multistep(order=2), options=ANCESTRAL, stochastic=True,
                    summary="DPM-Solver++(2M) SDE (η; η=0 is ++2M)"))
UNIPC = UNIPC_OPTIONS + (final_rule_option("always"),)
for _k in (1, 2, 3):
    register(SolverInfo(f"unipc-{_k}", Deferred("unipc.unipc"), _k + 1, Multistep(order=_k, final_rule="always"), options=UNIPC,
                        summary=f"UniPC-{_k}: UniP-{_k} + UniC (order {_k + 1}); bh1/bh2, data/noise prediction"))
for _k in (1, 2, 3):
    register(SolverInfo(f"deis-{_k}", Deferred("deis.deis"), _k, Multistep(order=_k, final_rule="diffusers-15"),
                        options=(BASIS, final_rule_option("diffusers-15")),
                        summary=f"DEIS-{_k} multistep (tAB; ρAB, logρ = diffusers' as options)"))
IPNDM_RULE = Multistep(order=4, final_rule="never", order_option="max_order")
register(SolverInfo("ipndm", Deferred("pndm.ipndm"), 2, IPNDM_RULE, options=(MAX_ORDER,), order_grid="edm",
                    summary="iPNDM: fixed-step Adams–Bashforth 4 in σ (order 4 on uniform grids, ≈2 on ρ=7)"))
register(SolverInfo("ipndm-v", Deferred("pndm.ipndm_v"), 4, IPNDM_RULE, options=(MAX_ORDER,), order_grid="edm",
                    summary="iPNDM_v: variable-step Adams–Bashforth 4 in σ"))
register(SolverInfo("plms", Deferred("pndm.plms"), 2, PLMSRule(), options=(COMBINE,), order_grid="edm",
                    summary="PLMS (diffusers' PNDM with skip_prk_steps): Heun first step, then AB2–4 in σ"))
register(SolverInfo("pndm", Deferred("pndm.pndm"), 2, PNDMRule(), options=(PRK_NODES, COMBINE), order_grid="edm",
                    summary="PNDM (diffusers' PNDMScheduler): 3 pseudo Runge–Kutta steps, then AB4 in σ"))
register(SolverInfo("ddpm", Deferred("ancestral.ddpm"), 1, stochastic=True, summary="DDPM ancestral (posterior variance, fixed_small)"))
register(SolverInfo("dpm-solver++3s", Deferred("dpm.dpm_solver_pp_singlestep"), 3, Singlestep(order=3), options=SINGLESTEP_3,
                    summary="DPM-Solver++(3S), data prediction, nodes ⅓, ⅔ (or the next grid points)"))
register(SolverInfo("dpm2", Deferred("dpm2.dpm2"), 2, DPM2Rule(), options=(MIDPOINT,) + EDM_CHURN, check=check_churn_window,
                    order_grid="edm", summary="DPM-2 (k-diffusion's sample_dpm_2): Euler to the geometric-mean σ, full step with its slope"))
register(SolverInfo("restart", Deferred("restart.restart"), 2, RestartRule(), options=RESTART_OPTIONS,
                    check=check_restart_interval, stochastic=True, order_grid="edm",
                    summary="Restart: Heun; per interval [σ_min, σ_max], K forward jumps each followed by Heun back down"))
register(SolverInfo("reference", Deferred("reference.reference"), 5, AdaptiveOnGrid(), options=(RTOL_REF, ATOL_REF), color="#000000", float64=True,
                    summary="RK45 (Dormand–Prince) in float64, rtol 1e-8: ground truth"))

__all__ = ["SOLVERS", "Option", "SolverInfo", "carry_options", "get_solver", "register", "solver_color", "SolverContext"]
