"""The solver registry: one function per solver, one line per registration.

A solver is ``fn(ctx: SolverContext) -> Iterator[StepEvent]``. Its :class:`SolverInfo`
says how its NFE follows from the step count and which order each step has, so the
GUI can show the NFE before a run and the CLI can turn an NFE budget into steps.
Adding a solver is one function and one ``register`` call; the GUI, CLI and tests
pick it up from :data:`SOLVERS`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

if TYPE_CHECKING:
    from explorer.core.events import StepEvent
    from explorer.core.solvers.context import SolverContext

SolverFn = Callable[["SolverContext"], Iterator["StepEvent"]]


class _Deferred:
    """A solver module that is imported when one of its solvers first runs.

    Listing the solvers (``diffusion-explorer solvers``, the CLI's parser) then needs
    neither torch nor scipy; only the register lines below see these stand-ins.
    """

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> "_DeferredFn":
        return _DeferredFn(self._module, name)


class _DeferredFn:
    def __init__(self, module: str, name: str) -> None:
        self._module, self.__name__, self.__qualname__ = module, name, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self._module), self.__name__)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<solver {self._module}.{self.__name__}>"


adaptive, ancestral, dpm, edm, lms, multistep, reference = (
    _Deferred(f"explorer.core.solvers.{m}") for m in ("adaptive", "ancestral", "dpm", "edm", "lms", "multistep", "reference")
)


@dataclass(frozen=True)
class SolverInfo:
    """What the rest of the program needs to know about a solver.

    Attributes:
        name: registry key (CLI ``--solver``).
        fn: the solver function.
        order: global convergence order on a smooth ODE (SPEC §5).
        evals_per_step: D evaluations of a regular step (singlestep order k: k).
        family: edm | singlestep | multistep | adaptive | reference | ancestral | fast.
        step_order: the nominal order of each step (singlestep/multistep), else 0.
        churn: accepts EDM's S_churn.
        stochastic: draws noise during the run.
        adaptive: chooses its own steps (NFE not known in advance).
        summary: one line for ``diffusion-explorer solvers`` and the GUI.
    """

    name: str
    fn: SolverFn = field(repr=False)
    order: int
    evals_per_step: int = 1
    family: str = "edm"
    step_order: int = 0
    churn: bool = False
    stochastic: bool = False
    adaptive: bool = False
    summary: str = ""

    @property
    def nfe_rule(self) -> str:
        """How NFE follows from N steps, in words."""
        if self.family == "fast":
            return "NFE as asked (steps = NFE)"
        if self.adaptive:
            return "adaptive (counted during the run)"
        if self.evals_per_step == 1:
            return "N"
        k = self.evals_per_step
        return f"{k}N−{k - 1} (final zero), {k}N otherwise"

    def nfe(self, steps: int, to_zero: bool) -> Optional[int]:
        """Evaluations of a run of ``steps`` steps (without final=denoise's extra one)."""
        if self.adaptive:
            return None
        if self.family == "fast":
            return steps
        k = self.evals_per_step
        return k * (steps - 1) + 1 if to_zero and k > 1 else k * steps

    def step_orders(self, steps: int, lower_order_final: bool) -> Optional[list[int]]:
        """Per-step orders for singlestep and multistep solvers (SPEC §4)."""
        if self.family == "singlestep":
            return [self.step_order] * steps
        if self.family == "multistep":
            orders = [min(self.step_order, i + 1) for i in range(steps)]
            if lower_order_final and steps < 10:
                orders = [min(o, steps - i) for i, o in enumerate(orders)]
            return orders
        return None


SOLVERS: dict[str, SolverInfo] = {}


def register(info: SolverInfo) -> None:
    SOLVERS[info.name] = info


def get_solver(name: str) -> SolverInfo:
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError(f"Unknown solver {name!r}; choose one of {', '.join(SOLVERS)}.") from None


register(SolverInfo("euler", edm.euler, 1, churn=True, summary="Euler in t (EDM Alg. 1; with churn, Alg. 2)"))
register(SolverInfo("heun", edm.heun, 2, evals_per_step=2, churn=True, summary="Heun in t, α option (EDM Alg. 1; with churn, Alg. 2)"))
register(SolverInfo("ddim", dpm.ddim, 1, family="edm", summary="DDIM (x̂₀ form; equals DPM-Solver-1)"))
register(SolverInfo("dpm-solver-1", dpm.dpm_solver, 1, family="singlestep", step_order=1, summary="DPM-Solver-1 (noise prediction)"))
register(SolverInfo("dpm-solver-2", dpm.dpm_solver, 2, evals_per_step=2, family="singlestep", step_order=2, summary="DPM-Solver-2, singlestep, node r₁=½"))
register(SolverInfo("dpm-solver-3", dpm.dpm_solver, 3, evals_per_step=3, family="singlestep", step_order=3, summary="DPM-Solver-3, singlestep, nodes ⅓, ⅔"))
register(SolverInfo("dpm-solver-fast", dpm.dpm_solver, 3, family="fast", step_order=3, summary="DPM-Solver-fast: orders 3,…,3,2,1 for an NFE budget"))
register(SolverInfo("dpm-solver-12", adaptive.dpm_solver_12, 2, evals_per_step=2, family="adaptive", adaptive=True, summary="adaptive DPM-Solver-12 (rtol/atol)"))
register(SolverInfo("dpm-solver-23", adaptive.dpm_solver_23, 3, evals_per_step=3, family="adaptive", adaptive=True, summary="adaptive DPM-Solver-23 (rtol/atol)"))
register(SolverInfo("dpm-solver-2m", multistep.dpm_solver_multistep, 2, family="multistep", step_order=2, summary="DPM-Solver-2M, multistep, noise prediction"))
register(SolverInfo("dpm-solver-3m", multistep.dpm_solver_multistep, 2, family="multistep", step_order=3, summary="DPM-Solver-3M as the libraries (formally 2nd order)"))
register(SolverInfo("dpm-solver-3m-taylor", multistep.dpm_solver_multistep_taylor, 3, family="multistep", step_order=3, summary="DPM-Solver-3M with 2·D2 (3rd order)"))
register(SolverInfo("dpm-solver++2s", dpm.dpm_solver_pp_singlestep, 2, evals_per_step=2, family="singlestep", step_order=2, summary="DPM-Solver++(2S), data prediction"))
register(SolverInfo("dpm-solver++2m", multistep.dpm_solver_pp_multistep, 2, family="multistep", step_order=2, summary="DPM-Solver++(2M), data prediction"))
register(SolverInfo("dpm-solver++3m", multistep.dpm_solver_pp_multistep, 2, family="multistep", step_order=3, summary="DPM-Solver++(3M) as the libraries (formally 2nd order)"))
register(SolverInfo("dpm-solver++3m-taylor", multistep.dpm_solver_pp_multistep_taylor, 3, family="multistep", step_order=3, summary="DPM-Solver++(3M) with 2·D2 (3rd order)"))
register(SolverInfo("lms", lms.lms, 4, summary="linear multistep, order 4, in t (k-diffusion's lms for EDM)"))
register(SolverInfo("euler-ancestral", ancestral.euler_ancestral, 1, stochastic=True, summary="Euler ancestral (η)"))
register(SolverInfo("dpm-solver++2m-sde", multistep.dpm_solver_pp_2m_sde, 1, family="multistep", step_order=2, stochastic=True, summary="DPM-Solver++(2M) SDE (η; η=0 is ++2M)"))
register(SolverInfo("reference", reference.reference, 5, family="reference", adaptive=True, summary="RK45 (Dormand–Prince) in float64, rtol 1e-8: ground truth"))

# The stand-ins leave the package namespace: `from explorer.core.solvers import dpm` imports the real module.
del adaptive, ancestral, dpm, edm, lms, multistep, reference


def __getattr__(name: str) -> Any:
    if name == "SolverContext":  # torch-backed; imported when asked for
        from explorer.core.solvers.context import SolverContext

        return SolverContext
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SOLVERS", "SolverInfo", "get_solver", "register", "SolverContext"]
