"""``--preset diffusers``: a diffusers scheduler config turned into the explorer's run settings.

Given ``scheduler_config.json`` and a step count, :func:`diffusers_fields` returns the
RunConfig fields (σ grid, network timesteps, solver, per-step orders, process, starting
scale) under which the explorer's own solvers walk exactly the loop diffusers' scheduler
walks on the same latents: final states agree to ~1e-13 relative in float64 (tests).

Two families:

- VP-space schedulers (DDIM, DPMSolverMultistep, DPMSolverSinglestep, …): the state is diffusers' ``x_t`` — the
  explorer's process with σ(t) = t and s = 1/sqrt(1 + σ²) — started from the latents
  themselves (``init_noise_sigma = 1``, not σ̄(t_0)).
- k-diffusion-style schedulers (Euler, Heun, LMS, KDPM2): the state is unscaled (EDM
  process), started from ``init_noise_sigma`` · latents, which diffusers takes as
  sqrt(σ_max² + 1) with ``leading`` spacing and σ_max with ``linspace``/``trailing``.
  KDPM2's grid interleaves its float32 midpoints with the step ends (solver dpm2,
  ``midpoint=grid``).

Where diffusers does something the ODE would not (a Karras grid evaluated at rounded
integer timesteps, a last σ that is not 0), the preset reproduces it and says so in
``notes``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from explorer.core.schedulers import spacing as sp
from explorer.core.solvers.rules import grid_block_orders

VP_SPACE = ("DDIMScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler",
            "DEISMultistepScheduler", "PNDMScheduler")
K_STYLE = ("EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler", "KDPM2DiscreteScheduler")
SUPPORTED = VP_SPACE + K_STYLE
DPM_SOLVERS = ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler")  # λ clipping, σ(t=0) as sigma_min


@dataclass
class Preset:
    """RunConfig fields of a preset, and what the user should know about them."""

    fields: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def read_scheduler_config(path: Union[str, Path]) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "scheduler_config.json"
    if not path.exists():
        raise FileNotFoundError(f"Scheduler config {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}.") from None
    if not isinstance(data, dict) or "_class_name" not in data:
        raise ValueError(f"{path} is not a diffusers scheduler config (it has no '_class_name').")
    return data


def diffusers_fields(cfg: dict, steps: int) -> Preset:
    """The preset for ``steps`` inference steps of the scheduler described by ``cfg``."""
    name = cfg.get("_class_name", "")
    if name not in SUPPORTED:
        raise ValueError(f"The diffusers preset does not know {name!r}; it reproduces {', '.join(SUPPORTED)}.")
    _refuse_unsupported(cfg, name)
    if name == "DDIMScheduler":
        return _ddim(cfg, steps)
    if name == "DPMSolverMultistepScheduler":
        return _dpm_multistep(cfg, steps)
    if name == "DPMSolverSinglestepScheduler":
        return _dpm_singlestep(cfg, steps)
    if name == "UniPCMultistepScheduler":
        return _unipc(cfg, steps)
    if name == "DEISMultistepScheduler":
        return _deis(cfg, steps)
    if name == "PNDMScheduler":
        return _pndm(cfg, steps)
    if name == "KDPM2DiscreteScheduler":
        return _kdpm2(cfg, steps)
    return _k_style(cfg, name, steps)


def _refuse_unsupported(cfg: dict, name: str) -> None:
    for key in ("thresholding", "use_lu_lambdas", "euler_at_final", "use_flow_sigmas", "rescale_betas_zero_snr"):
        if cfg.get(key):
            raise ValueError(f"{name} with {key}=true is not reproduced by the explorer's preset.")
    if cfg.get("timestep_type", "discrete") != "discrete":
        raise ValueError(f"{name} with timestep_type={cfg['timestep_type']!r} is not reproduced (only 'discrete').")
    if cfg.get("interpolation_type", "linear") != "linear":
        raise ValueError(f"{name} with interpolation_type={cfg['interpolation_type']!r} is not reproduced (only 'linear').")
    if sum(bool(cfg.get(k)) for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")) > 1:
        raise ValueError("Only one of use_karras_sigmas, use_exponential_sigmas and use_beta_sigmas may be set.")


def _alphas_cumprod32(cfg: dict) -> torch.Tensor:
    from explorer.models.diffusers_import import (
        alphas_cumprod_from_config,  # the float32 β table diffusers builds
    )

    return alphas_cumprod_from_config(cfg).to(torch.float32)


def _grid_kind(cfg: dict) -> Optional[str]:
    for key, kind in (("use_karras_sigmas", "karras"), ("use_exponential_sigmas", "exponential"),
                      ("use_beta_sigmas", "beta")):
        if cfg.get(key):
            return kind
    return None


def _converted(kind: str, sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    if kind == "karras":
        return sp.karras(sigma_min, sigma_max, n)
    if kind == "exponential":
        return sp.exponential(sigma_min, sigma_max, n)
    return sp.beta_sigmas(sigma_min, sigma_max, n)


def _label(cfg: dict, steps: int) -> str:
    kind = _grid_kind(cfg) or cfg.get("timestep_spacing", "default")
    return f"diffusers {cfg['_class_name']} ({kind}, {steps} steps)"


# ------------------------------------------------------------------------------ VP space
def _vp_space(cfg: dict, steps: int, solver: str, sigmas: list[float], timesteps: list[float], **extra: Any) -> dict:
    return dict(process="edm", sigma_schedule="linear", scaling="vp", solver=solver, sigmas=tuple(sigmas),
                timesteps=tuple(float(t) for t in timesteps), init_sigma=1.0, final="zero",
                schedule_label=_label(cfg, steps), **extra)


def _sigma_table64(cfg: dict) -> torch.Tensor:
    """σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) in float64 from diffusers' float32 ᾱ (what its float64 loop steps with)."""
    ac = _alphas_cumprod32(cfg).to(torch.float64)
    return ((1 - ac) / ac).sqrt()


def _jump_grid(cfg: dict, steps: int, name: str, ts: np.ndarray) -> tuple[np.ndarray, list[float], list[str]]:
    """σ's of a scheduler that steps from t to t − ⌊T/N⌋ (DDIM, PNDM), its last step to
    ``final_alpha_cumprod`` (σ = 0 with set_alpha_to_one, else σ(t=0))."""
    T = int(cfg.get("num_train_timesteps", 1000))
    jump = T // steps
    prev = ts - jump
    if any(int(p) != int(n) for p, n in zip(prev[:-1], ts[1:])):
        raise ValueError(f"diffusers' {name} steps from t to t − {jump}, which with timestep_spacing="
                         f"{cfg.get('timestep_spacing', 'leading')!r} and {steps} steps is not the next timestep; "
                         "the explorer cannot follow that loop (use 'leading').")
    table = _sigma_table64(cfg)
    sigmas = [float(table[int(t)]) for t in ts]
    notes = []
    if prev[-1] >= 0:
        sigmas.append(float(table[int(prev[-1])]))
        ts = np.concatenate([ts, prev[-1:]])
        notes.append(f"diffusers' {name} stops at t = {int(prev[-1])} (σ = {sigmas[-1]:.4g}), not at σ = 0.")
    elif cfg.get("set_alpha_to_one", name == "DDIM"):  # the class defaults: DDIM true, PNDM false
        sigmas.append(0.0)
    elif int(ts[-1]) == 0:
        notes.append(f"set_alpha_to_one=false with a last timestep of 0: diffusers' last {name} step goes from "
                     "σ(t=0) to σ(t=0), a step of zero length that costs an evaluation and leaves the state "
                     "unchanged; the explorer stops at σ(t=0) one evaluation earlier, with the same final state.")
    else:
        sigmas.append(float(table[0]))
        ts = np.concatenate([ts, [0]])
        notes.append(f"set_alpha_to_one=false: the last step goes to σ = σ(t=0) = {sigmas[-1]:.4g}, not 0.")
    return ts, sigmas, notes


def _ddim(cfg: dict, steps: int) -> Preset:
    T = int(cfg.get("num_train_timesteps", 1000))
    spacing = cfg.get("timestep_spacing", "leading")
    ts = sp.spaced_timesteps(spacing, steps, T, int(cfg.get("steps_offset", 0)), integer=True)
    ts, sigmas, notes = _jump_grid(cfg, steps, "DDIM", ts)
    options = {}
    if cfg.get("clip_sample", True):  # DDIMScheduler's own default
        clip = float(cfg.get("clip_sample_range", 1.0))
        options["clip_x0"] = clip
        notes.append(f"diffusers' DDIM clips x̂₀ to ±{clip:g} in every step and keeps the unclipped ε̂ "
                     "(clip_sample): reproduced, but the run no longer follows the ODE.")
    return Preset(_vp_space(cfg, steps, "ddim", sigmas, ts.tolist(), options=options), notes)


def _pndm(cfg: dict, steps: int) -> Preset:
    """PNDMScheduler on the DDIM-like grid: PLMS with skip_prk_steps (N + 1 evaluations), else
    PNDM with its Runge–Kutta midpoints on the grid; v models combine their raw v outputs."""
    if _grid_kind(cfg) is not None:
        raise ValueError("PNDMScheduler has no Karras, exponential or beta σ's.")
    prediction = cfg.get("prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"PNDMScheduler with prediction_type={prediction!r} is not reproduced: diffusers' own "
                         "PNDMScheduler.step rejects it (it takes 'epsilon' or 'v_prediction').")
    T = int(cfg.get("num_train_timesteps", 1000))
    ts = sp.spaced_timesteps(cfg.get("timestep_spacing", "leading"), steps, T, int(cfg.get("steps_offset", 0)),
                             integer=True)
    ts, sigmas, notes = _jump_grid(cfg, steps, "PNDM", ts)
    options = {"combine": "v" if prediction == "v_prediction" else "eps"}
    if prediction == "v_prediction":
        notes.append("diffusers' PNDM combines the raw v outputs of earlier evaluations and converts the sum to ε with "
                     "the current step's ᾱ and sample; the explorer's combine=v does the same (about first order).")
    if cfg.get("skip_prk_steps", False):
        notes.append("PNDM's first timestep is evaluated twice (a Heun step); the explorer's plms does the same.")
        return Preset(_vp_space(cfg, steps, "plms", sigmas, ts.tolist(), options=options), notes)
    ts, sigmas = _prk_midpoints(cfg, steps, ts, sigmas)
    notes.append(f"PNDM's three Runge–Kutta steps take their midpoints at the integer timesteps t − {T // steps // 2}; "
                 "the preset puts them on the grid (pndm with prk_nodes=grid: N + 6 evaluations).")
    return Preset(_vp_space(cfg, steps, "pndm", sigmas, ts.tolist(), options={**options, "prk_nodes": "grid"}), notes)


def _prk_midpoints(cfg: dict, steps: int, ts: np.ndarray, sigmas: list[float]) -> tuple[np.ndarray, list[float]]:
    """The grid with diffusers' Runge–Kutta midpoints t − ⌊T/N/2⌋ inserted after each of its first three points.

    diffusers lands the first midpoint state at t − ⌊T/N/2⌋ but evaluates it at the timestep
    t − ⌊T/N⌋ + ⌊T/N/2⌋ of its ``prk_timesteps``, and the second at t − ⌊T/N/2⌋ again; the
    two agree (one midpoint per step, as ``prk_nodes=grid`` has) only when ⌊T/N⌋ is even.
    """
    T = int(cfg.get("num_train_timesteps", 1000))
    jump = T // steps
    if steps < 4:
        raise ValueError(f"PNDMScheduler's Runge–Kutta start spans its last four timesteps; with {steps} steps it "
                         "ends early without the multistep phase, which the preset does not reproduce (use 4 or more).")
    if jump % 2:
        raise ValueError(f"PNDMScheduler with skip_prk_steps=false and ⌊T/N⌋ = {jump} (odd) lands each Runge–Kutta "
                         f"midpoint state at t − {jump // 2} but evaluates the network on it at t − {jump - jump // 2}, "
                         "a second midpoint the explorer's pndm does not have; choose N with ⌊T/N⌋ even or set "
                         "skip_prk_steps to true.")
    table = _sigma_table64(cfg)
    mids = [int(t) - jump // 2 for t in ts[:3]]
    out_ts = np.array([v for k, t in enumerate(ts) for v in ([t, mids[k]] if k < 3 else [t])])
    out_sig = [v for k, sig in enumerate(sigmas) for v in ([sig, float(table[mids[k]])] if k < 3 else [sig])]
    return out_ts, out_sig


def _dpm_multistep(cfg: dict, steps: int) -> Preset:
    algorithm = cfg.get("algorithm_type", "dpmsolver++")
    order = int(cfg.get("solver_order", 2))
    if algorithm not in ("dpmsolver++", "dpmsolver"):
        raise ValueError(f"DPMSolverMultistepScheduler with algorithm_type={algorithm!r} is not reproduced "
                         "(only dpmsolver++ and dpmsolver).")
    solver_type = cfg.get("solver_type", "midpoint")
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"DPMSolverMultistepScheduler solver_type must be 'midpoint' or 'heun' (got {solver_type!r}).")
    if order not in (1, 2, 3):
        raise ValueError(f"solver_order must be 1, 2 or 3 (got {order}).")
    ts, sigmas, notes = _multistep_grid(cfg, steps, "DPMSolverMultistepScheduler")
    final = cfg.get("final_sigmas_type", "zero")
    n = len(sigmas) - 1
    orders = _multistep_orders(n, order, bool(cfg.get("lower_order_final", True)), final == "zero")
    solver = ("dpm-solver++" if algorithm == "dpmsolver++" else "dpm-solver-") + ("3m" if order == 3 else "2m")
    return Preset(_vp_space(cfg, steps, solver, sigmas, ts.tolist(), orders=tuple(orders),
                            options={"solver_type": solver_type}), notes)


SINGLESTEP_SOLVERS = {("dpmsolver++", 2): "dpm-solver++2s", ("dpmsolver++", 3): "dpm-solver++3s",
                      ("dpmsolver", 2): "dpm-solver-2", ("dpmsolver", 3): "dpm-solver-3"}


def _dpm_singlestep(cfg: dict, steps: int) -> Preset:
    """DPMSolverSinglestepScheduler: the explorer's singlestep DPM-Solvers with ``nodes="grid"``.

    diffusers' order-k step goes from the state where its block began over k grid
    intervals, its inner nodes at the grid points in between, and the order list
    (``get_order_list``) ramps 1, 2, …, k within each block: the same steps as the
    explorer's singlestep solvers on the same grid with nodes at the grid's points. Its
    midpoint type takes the midpoint term at a block's second node too (node2="diffusers"),
    its heun type the φ₂ term there (node2="official", as the official code).
    """
    name = "DPMSolverSinglestepScheduler"
    algorithm = cfg.get("algorithm_type", "dpmsolver++")
    order = int(cfg.get("solver_order", 2))
    if algorithm not in ("dpmsolver++", "dpmsolver"):
        raise ValueError(f"{name} with algorithm_type={algorithm!r} is not reproduced (only dpmsolver++ and dpmsolver).")
    if order not in (1, 2, 3):
        raise ValueError(f"solver_order must be 1, 2 or 3 (got {order}).")
    solver_type = cfg.get("solver_type", "midpoint")
    solver_type = "midpoint" if solver_type in ("logrho", "bh1", "bh2") else solver_type  # diffusers' own fallback
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"{name} solver_type must be 'midpoint' or 'heun' (got {solver_type!r}).")
    if algorithm == "dpmsolver" and cfg.get("final_sigmas_type", "zero") == "zero":
        raise ValueError(f"{name} refuses algorithm_type='dpmsolver' with final_sigmas_type='zero' (diffusers raises); "
                         "use final_sigmas_type='sigma_min'.")
    ts, sigmas, notes = _multistep_grid(cfg, steps, name)
    if cfg.get("timestep_spacing", "linspace") != "linspace":
        notes.append(f"{name} has no timestep_spacing (diffusers ignores {cfg['timestep_spacing']!r}): its "
                     "timesteps are linspace, as reproduced.")
    n = len(sigmas) - 1
    orders = grid_block_orders(n, order, bool(cfg.get("lower_order_final", False)), sigmas[-1] == 0)
    solver = SINGLESTEP_SOLVERS[algorithm, max(order, 2)]  # order 1: every step of order 1
    options = {"nodes": "grid", "solver_type": solver_type}
    if order == 3:
        options["node2"] = "diffusers" if solver_type == "midpoint" else "official"
    return Preset(_vp_space(cfg, steps, solver, sigmas, ts.tolist(), orders=tuple(orders), options=options), notes)


def _multistep_grid(cfg: dict, steps: int, name: str) -> tuple[np.ndarray, list[float], list[str]]:
    """Timesteps and σ's (last included) of diffusers' VP multistep schedulers and of
    DPMSolverSinglestep.

    They share the spacing (DPMSolverSinglestep has linspace only, whatever the config
    says); they differ in whether λ may be clipped (the two DPM-Solvers), in how a Karras
    grid is put on the network's timesteps (DPMSolverMultistep rounds it except for cosine
    β's, the others always round) and in the last σ (DEIS: σ(t=0) on the spaced grid,
    a repeat of σ_min on a converted one; the others: ``final_sigmas_type``).
    """
    T = int(cfg.get("num_train_timesteps", 1000))
    ac32 = _alphas_cumprod32(cfg)
    table32 = sp.sigma_table(ac32)
    clip = float(cfg.get("lambda_min_clipped", -math.inf)) if name in DPM_SOLVERS else -math.inf
    last = T - _clipped_index(ac32, clip)
    kind = _grid_kind(cfg)
    notes: list[str] = []
    if kind is None:
        spacing = "linspace" if name == "DPMSolverSinglestepScheduler" else cfg.get("timestep_spacing", "linspace")
        ts = sp.spaced_timesteps(spacing, steps, T, int(cfg.get("steps_offset", 0)),
                                 extra_point=True, integer=True, last=last)
        sig = np.interp(ts, np.arange(0, len(table32)), table32)
    else:
        sig = _converted(kind, float(table32[0]), float(table32[-1]), steps)
        ts = sp.sigma_to_t(sig, table32)
        if kind == "karras" and (name != "DPMSolverMultistepScheduler" or cfg.get("beta_schedule") != "squaredcos_cap_v2"):
            ts = ts.round()
        ts = ts.astype(np.int64)  # diffusers casts to int64 (truncation) for the network
        if len(ts) > 1 and ts[0] == ts[1]:
            notes.append(f"The first timesteps repeat ({int(ts[0])}): diffusers' step counter then starts at the "
                         "second one unless the pipeline sets a begin index; the explorer steps every σ once.")
        notes.append(f"diffusers evaluates the network at integer timesteps while stepping the {kind} σ's "
                     "(σ and t disagree slightly); reproduced.")
    if name == "DEISMultistepScheduler" and kind is not None:
        notes.append(f"diffusers' DEIS ends the {kind} grid with a step of zero length (σ_min repeated) that costs "
                     "an evaluation and leaves the state unchanged; the explorer stops at σ_min one evaluation "
                     "earlier, with the same final state.")
        return ts, np.asarray(sig).astype(np.float32).astype(np.float64).tolist(), notes
    if name == "DEISMultistepScheduler":
        final, sig_last = "sigma_min", float(table32[0])
        ts = np.concatenate([ts, [0]])  # the timestep of σ(t=0) (never evaluated: the last point)
    else:
        final = cfg.get("final_sigmas_type", "zero")
        if final not in ("zero", "sigma_min"):
            raise ValueError(f"final_sigmas_type must be 'zero' or 'sigma_min' (got {final!r}).")
        sig_last = 0.0 if final == "zero" else float(sig[-1] if kind is not None and name not in DPM_SOLVERS
                                                       else table32[0])
        if final == "sigma_min":
            ts = np.concatenate([ts, [0]])
    sigmas = np.concatenate([sig, [sig_last]]).astype(np.float32).astype(np.float64).tolist()
    if final == "sigma_min":
        notes.append(f"The run stops at σ = {sigmas[-1]:.4g}, not at 0 (as {name} does).")
        if sigmas[-2] <= sigmas[-1]:
            raise ValueError(f"{name} with this grid ends on a repeat of σ_min: a step of zero length that "
                             "costs an evaluation and leaves the state unchanged, which the explorer's strictly "
                             "decreasing σ grids cannot hold.")
    return ts, sigmas, notes


def _unipc(cfg: dict, steps: int) -> Preset:
    """UniPCMultistepScheduler: UniP-k with UniC after every step but the last."""
    order = int(cfg.get("solver_order", 2))
    if order not in (1, 2, 3):
        raise ValueError(f"solver_order must be 1, 2 or 3 (got {order}).")
    variant = cfg.get("solver_type", "bh2")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"UniPCMultistepScheduler solver_type must be 'bh1' or 'bh2' (got {variant!r}).")
    if cfg.get("disable_corrector"):
        raise ValueError("UniPCMultistepScheduler with disable_corrector (UniC off at some steps only) is not "
                         "reproduced; the explorer's unipc takes the corrector on or off for the whole run.")
    ts, sigmas, notes = _multistep_grid(cfg, steps, "UniPCMultistepScheduler")
    predict_x0 = bool(cfg.get("predict_x0", True))
    if sigmas[-1] == 0 and (variant == "bh1" or not predict_x0):
        raise ValueError("UniPCMultistepScheduler with final_sigmas_type='zero' and "
                         f"{'solver_type=bh1' if variant == 'bh1' else 'predict_x0=false'} divides by zero at σ = 0 "
                         "(diffusers returns NaN); use final_sigmas_type='sigma_min'.")
    n = len(sigmas) - 1
    lower = bool(cfg.get("lower_order_final", True))
    orders = [min(order, i + 1, n - i if lower else order) for i in range(n)]
    options = {"variant": variant, "prediction": "data" if predict_x0 else "noise", "corrector": True}
    return Preset(_vp_space(cfg, steps, f"unipc-{order}", sigmas, ts.tolist(), orders=tuple(orders),
                            options=options), notes)


def _deis(cfg: dict, steps: int) -> Preset:
    """DEISMultistepScheduler: DEIS-k in the log-ρ basis, ending at σ(t=0) (not 0)."""
    order = int(cfg.get("solver_order", 2))
    if order not in (1, 2, 3):
        raise ValueError(f"solver_order must be 1, 2 or 3 (got {order}).")
    if cfg.get("algorithm_type", "deis") != "deis" or cfg.get("solver_type", "logrho") != "logrho":
        raise ValueError("DEISMultistepScheduler is reproduced with algorithm_type='deis', solver_type='logrho' only.")
    ts, sigmas, notes = _multistep_grid(cfg, steps, "DEISMultistepScheduler")
    orders = _multistep_orders(steps, order, bool(cfg.get("lower_order_final", True)), False)
    orders = orders[:len(sigmas) - 1]  # on converted grids the zero-length last step is dropped
    return Preset(_vp_space(cfg, steps, f"deis-{order}", sigmas, ts.tolist(), orders=tuple(orders),
                            options={"basis": "logrho"}), notes)


def _clipped_index(ac32: torch.Tensor, lambda_min: float) -> int:
    """How many of the smallest-λ training timesteps DPM-Solver drops (``lambda_min_clipped``)."""
    if not math.isfinite(lambda_min):
        return 0
    lam = torch.log(ac32**0.5) - torch.log((1 - ac32) ** 0.5)
    return int(torch.searchsorted(torch.flip(lam, [0]), lambda_min))


def _multistep_orders(n: int, order: int, lower_final: bool, to_zero: bool) -> list[int]:
    """diffusers' per-step orders: warm-up, then lowered in the last steps when N < 15 (or final zero)."""
    out, done = [], 0
    for i in range(n):
        last = i == n - 1 and ((lower_final and n < 15) or to_zero)
        second = i == n - 2 and lower_final and n < 15
        if order == 1 or done < 1 or last:
            k = 1
        elif order == 2 or done < 2 or second:
            k = 2
        else:
            k = 3
        out.append(k)
        done = min(done + 1, order)
    return out


# ------------------------------------------------------------------------ k-diffusion style
def _k_grid(cfg: dict, steps: int, round_karras: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timesteps, σ's (float64, without the last 0) and the float32 σ table of the
    k-diffusion-style schedulers; ``round_karras``: a Karras grid's timesteps are rounded
    (KDPM2), where Euler, Heun and LMS keep them fractional."""
    T = int(cfg.get("num_train_timesteps", 1000))
    table32 = sp.sigma_table(_alphas_cumprod32(cfg))
    ts = sp.spaced_timesteps(cfg.get("timestep_spacing", "linspace"), steps, T, int(cfg.get("steps_offset", 0)),
                             integer=False)
    sig = np.interp(ts, np.arange(0, len(table32)), table32)
    kind = _grid_kind(cfg)
    if kind is not None:
        lo = cfg.get("sigma_min") if cfg.get("sigma_min") is not None else sig[-1].item()
        hi = cfg.get("sigma_max") if cfg.get("sigma_max") is not None else sig[0].item()
        sig = _converted(kind, float(lo), float(hi), steps)
        ts = sp.sigma_to_t(sig, table32)
        if round_karras and kind == "karras":
            ts = ts.round()
    return ts, sig, table32


def _k_fields(cfg: dict, steps: int, solver: str, sigmas: list[float], ts: np.ndarray, notes: list[str],
              **extra: Any) -> dict:
    """RunConfig fields of a k-diffusion-style loop: the unscaled (EDM) state, started from
    diffusers' ``init_noise_sigma`` · latents."""
    if cfg.get("timestep_spacing", "linspace") in ("linspace", "trailing"):
        init = max(sigmas)
    else:
        init = math.sqrt(max(sigmas) ** 2 + 1)
        notes.append("With leading spacing diffusers starts from sqrt(σ_max² + 1)·latents, not σ_max·latents; reproduced.")
    return dict(process="edm", sigma_schedule=None, scaling=None, solver=solver, sigmas=tuple(sigmas),
                timesteps=tuple(float(t) for t in np.asarray(ts).astype(np.float32)), init_sigma=init, final="zero",
                schedule_label=_label(cfg, steps), **extra)


def _k_style(cfg: dict, name: str, steps: int) -> Preset:
    ts, sig, table32 = _k_grid(cfg, steps)
    final = cfg.get("final_sigmas_type", "zero") if name == "EulerDiscreteScheduler" else "zero"
    notes: list[str] = []
    sig_last = 0.0 if final == "zero" else float(table32[0])
    if final == "sigma_min":
        notes.append(f"final_sigmas_type=sigma_min: the run stops at σ = {sig_last:.4g}, not at 0.")
    sigmas = np.concatenate([sig, [sig_last]]).astype(np.float32).astype(np.float64).tolist()
    solver = {"EulerDiscreteScheduler": "euler", "HeunDiscreteScheduler": "heun", "LMSDiscreteScheduler": "lms"}[name]
    return Preset(_k_fields(cfg, steps, solver, sigmas, ts, notes), notes)


def _kdpm2(cfg: dict, steps: int) -> Preset:
    """KDPM2DiscreteScheduler: DPM-2 whose midpoints, and their fractional timesteps, are
    points of the grid (σ_0, σ_mid,1, σ_1, …, σ_N−1, 0), computed in float32 as diffusers
    computes them; 2N − 1 evaluations, the last step Euler to σ = 0."""
    if cfg.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"):
        raise ValueError(f"KDPM2DiscreteScheduler with prediction_type={cfg['prediction_type']!r} is not reproduced: "
                         "diffusers' KDPM2 implements only 'epsilon' and 'v_prediction'.")
    ts, sig, table32 = _k_grid(cfg, steps, round_karras=True)
    outer = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
    mids = sp.log_midpoints32(outer)[1:-1]  # the midpoint of each step but the last (Euler to 0)
    mid_ts = sp.sigma_to_t(mids.numpy(), table32, np.float32)
    sigmas: list[float] = [float(outer[0])]
    timesteps: list[float] = [float(ts[0])]
    for i in range(len(mids)):
        sigmas += [float(mids[i]), float(outer[i + 1])]
        timesteps += [float(mid_ts[i]), float(ts[i + 1])]
    notes = ["diffusers' KDPM2 evaluates each midpoint (the geometric mean of the step's σ's, in float32) at a "
             "fractional timestep interpolated in log σ; the grid holds both, and the Euler state at each midpoint is "
             "recorded as a step of its own (solver dpm2, midpoint=grid)."]
    if _grid_kind(cfg) == "karras":
        notes.append("diffusers evaluates the network at rounded timesteps while stepping the Karras σ's "
                     "(σ and t disagree slightly); reproduced.")
    sigmas.append(0.0)
    fields = _k_fields(cfg, steps, "dpm2", sigmas, np.asarray(timesteps), notes, options={"midpoint": "grid"})
    return Preset(fields, notes)
