"""The sampling engine: torch, numpy and scipy only, never Qt."""
from explorer.core.analytic import GaussianDenoiser, GMMDenoiser, IdealDenoiser, gmm_from_spec, load_gmm_json, toy, TOYS
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.discretization import DISCRETIZATIONS, FINALS
from explorer.core.events import StepEvent
from explorer.core.plan import plan_run, predicted_nfe
from explorer.core.process import PROCESSES, Process
from explorer.core.sampling import NonFiniteError, make_plan, sample, sample_steps
from explorer.core.solvers import SOLVERS, SolverInfo, get_solver
from explorer.core.trajectory import Trajectory

__all__ = [
    "DISCRETIZATIONS", "Denoiser", "FINALS", "GMMDenoiser", "GaussianDenoiser", "IdealDenoiser", "NonFiniteError",
    "PROCESSES", "Process", "RunConfig", "SOLVERS", "SolverInfo", "StepEvent", "TOYS", "Trajectory", "get_solver",
    "gmm_from_spec", "load_gmm_json", "make_plan", "plan_run", "predicted_nfe", "sample", "sample_steps", "toy",
]
