"""Comparison and convergence plots for files (matplotlib, Agg), one colour per solver.

* :func:`sigma_figure` — σ_i against i and against t, one curve per column.
* :func:`trajectory_figure` — 2-D particle paths, or chosen pixels' values against σ.
* :func:`error_figure` — per-step error against σ, and final error against NFE.
* :func:`sweep_figure` — error against NFE on log–log axes, fitted order in the legend
  (the convergence figures of the DPM-Solver paper).

:func:`save_plot` writes PNG or SVG atomically and reproducibly (no date, fixed SVG ids),
so a comparison exported twice gives identical files.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from explorer.core.compare import REFERENCE_COLOR, ColumnError, ColumnRun, data_space, solver_color  # noqa: E402
from explorer.core.sweep import SweepResult  # noqa: E402
from explorer.core.files import atomic_write  # noqa: E402

FORMATS = ("png", "svg")
DPI = 110
MAX_PATHS = 64  # particle paths drawn per column
MAX_PIXEL_TRACES = 3


def save_plot(fig: "plt.Figure", path: str | os.PathLike) -> Path:
    """PNG or SVG by suffix, written atomically and without timestamps; closes the figure."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"Plots are saved as .png or .svg, not {path.name!r}.")
    meta = {"Date": None} if fmt == "svg" else {"Software": None}
    try:
        with matplotlib.rc_context({"svg.hashsalt": "diffusion-explorer"}):
            return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=DPI, metadata=meta))
    finally:
        plt.close(fig)


def _legend(ax: "plt.Axes") -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _positive_sigma(sig: np.ndarray) -> np.ndarray:
    return sig > 0


def sigma_figure(runs: Sequence[ColumnRun], labels: Sequence[str]) -> "plt.Figure":
    """σ_i against step i (log), and σ against t with each column's steps marked."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for run, label in zip(runs, labels):
        tr, color = run.trajectory, run.color
        sig, t = tr.sigma.double().numpy(), tr.t.double().numpy()
        ok = _positive_sigma(sig)
        left.semilogy(np.arange(len(sig))[ok], sig[ok], "o-", ms=3, color=color, label=label)
        right.loglog(t[t > 0], sig[t > 0], "o-", ms=3, color=color, label=label)
    left.set(xlabel="step i", ylabel="σ_i", title="noise level of each state")
    right.set(xlabel="t (each column's own process)", ylabel="σ(t)", title="σ(t) and the steps")
    _legend(left)
    fig.tight_layout()
    return fig


def trajectory_figure(runs: Sequence[ColumnRun], labels: Sequence[str], reference: Optional[ColumnRun] = None,
                      pixels: Optional[Sequence[tuple[int, int]]] = None) -> "plt.Figure":
    """2-D data: each column's particle paths in data space (x/s), the reference's dashed black.
    Images: a few pixels of the first sample against σ (log), one colour per column."""
    sample = runs[0].trajectory.x[0, 0]
    fig, ax = plt.subplots(figsize=(6.5, 5.5) if sample.numel() == 2 else (8, 4.5))
    series = list(zip(runs, labels)) + ([(reference, "reference")] if reference is not None else [])
    if sample.numel() == 2:
        for run, label in series:
            ys = data_space(run.trajectory)[:, :MAX_PATHS].reshape(-1, min(MAX_PATHS, run.trajectory.x.shape[1]), 2).numpy()
            style = dict(color=REFERENCE_COLOR, ls="--", lw=0.8) if run is reference else dict(color=run.color, lw=0.9, alpha=0.8)
            for k in range(ys.shape[1]):
                ax.plot(ys[:, k, 0], ys[:, k, 1], label=label if k == 0 else None, **style)
            ax.plot(ys[-1, :, 0], ys[-1, :, 1], "o", ms=2.5, color=style["color"])
        ys_final = data_space(runs[0].trajectory)[-1].numpy().reshape(-1, 2)
        lo, hi = np.nanmin(ys_final, 0), np.nanmax(ys_final, 0)
        mid, half = (lo + hi) / 2, float(max(hi - lo)) * 0.8 + 1e-6
        ax.set(xlim=(mid[0] - half, mid[0] + half), ylim=(mid[1] - half, mid[1] + half), aspect="equal",
               title="particle paths x/s (zoomed on the samples)")
    else:
        flat = sample.reshape(-1).numel()
        chosen = _pixel_indices(runs[0].trajectory, pixels)
        for run, label in series:
            tr = run.trajectory
            ys = data_space(tr)[:, 0].reshape(tr.x.shape[0], -1)[:, chosen].numpy()
            sig = tr.sigma.double().numpy()
            ok = _positive_sigma(sig)
            style = dict(color=REFERENCE_COLOR, ls="--", lw=0.8) if run is reference else dict(color=run.color, lw=1.0, marker="o", ms=2.5)
            for p in range(ys.shape[1]):
                ax.plot(sig[ok], ys[ok, p], label=label if p == 0 else None, **style)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set(xlabel="σ", ylabel="pixel value (x/s)", title=f"{len(chosen)} pixels of sample 0 (of {flat}) against σ")
    _legend(ax)
    fig.tight_layout()
    return fig


def _pixel_indices(tr, pixels: Optional[Sequence[tuple[int, int]]]) -> list[int]:
    shape = tuple(tr.x.shape[2:])
    if len(shape) == 3:
        h, w = shape[1], shape[2]
        chosen = pixels or [(h // 2, w // 2), (h // 4, w // 4), (3 * h // 4, w // 3)]
        return [min(h - 1, y) * w + min(w - 1, x) for y, x in chosen[:MAX_PIXEL_TRACES]]
    n = int(np.prod(shape))
    return sorted({0, n // 2, n - 1})[:MAX_PIXEL_TRACES]


def error_figure(runs: Sequence[ColumnRun], labels: Sequence[str], errors: Sequence[Optional[ColumnError]]) -> "plt.Figure":
    """Left: RMSE against the reference at every state with a matching σ (log–log, σ falling to
    the right). Right: final RMSE against NFE, one point per column."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for run, label, err in zip(runs, labels, errors):
        if err is None:
            continue
        sig, e = np.array(err.step_sigma), np.array(err.step)
        ok = (sig > 0) & np.isfinite(e) & (e > 0)
        left.loglog(sig[ok], e[ok], "o-", ms=3, color=run.color, label=label)
        if math.isfinite(err.final) and err.final > 0:
            right.loglog([run.trajectory.nfe], [err.final], "o", ms=7, color=run.color, label=label)
    left.invert_xaxis()
    left.set(xlabel="σ", ylabel="RMSE vs reference", title="error along the run")
    right.set(xlabel="NFE", ylabel="final RMSE vs reference", title="final error against cost")
    _legend(right)
    fig.tight_layout()
    return fig


def sweep_figure(sweep: SweepResult, title: str = "") -> "plt.Figure":
    """Final error against NFE (log–log) per solver, with the fitted order in the legend."""
    fig, ax = plt.subplots(figsize=(6.5, 5))
    orders = sweep.orders()
    schedules = list(dict.fromkeys(s.partition(" @ ")[2] for s in sweep.solvers))  # a schedule axis: one line style each
    for solver in sweep.solvers:
        base, _, schedule = solver.partition(" @ ")
        style = ("o-", "s--", "^-.", "D:")[schedules.index(schedule) % 4]
        pts = [p for p in sweep.of(solver) if p.error > 0 and math.isfinite(p.error)]
        if not pts:
            continue
        nfe, err = np.array([p.nfe for p in pts], float), np.array([p.error for p in pts])
        order = orders[solver]
        name = f"{solver} (order {order:.2f})" if math.isfinite(order) else solver
        ax.loglog(nfe, err, style, color=solver_color(base), label=name)
        if math.isfinite(order) and len(nfe) > 1:  # the fitted line, through the points' centre of mass in log–log
            x0, y0 = np.log(nfe).mean(), np.log(err).mean()
            ends = np.array([nfe.min(), nfe.max()])
            ax.loglog(ends, np.exp(y0 - order * (np.log(ends) - x0)), ":", lw=1, color=solver_color(base))
    used = sorted({p.budget for p in sweep.points})  # the budgets asked: round numbers that do not collide
    if 1 < len(used) <= 12:
        ax.set_xticks(used)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel="NFE", ylabel=f"final RMSE vs {sweep.reference_kind}", title=title or "error against NFE")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    return fig

