"""The σ(t) schedule figure (matplotlib, Agg) for ``diffusion-explorer schedule --plot``.

Save it with :func:`explorer.export.figures.save_plot` (PNG/SVG, reproducible, atomic).
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from explorer.core.solvers.context import Plan  # noqa: E402


def schedule_figure(plan: Plan, title: str = "") -> "plt.Figure":
    """σ(t) and s(t) with the steps marked, and σ_i, λ_i and the step size against i."""
    proc = plan.process
    t = np.array(plan.t)
    t_pos = t[t > 0]
    dense = np.linspace(t_pos.min(), t_pos.max(), 400)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0, 0]
    ax.plot(dense, proc.sigma(torch.tensor(dense)).numpy(), label="σ(t)")
    ax.plot(t_pos, proc.sigma(torch.tensor(t_pos)).numpy(), "o", ms=4, label="steps")
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("σ")
    ax2 = ax.twinx()
    ax2.plot(dense, proc.s(torch.tensor(dense)).numpy(), color="tab:green", alpha=0.7, label="s(t)")
    ax2.set_ylabel("s(t)", color="tab:green")
    ax.legend(loc="upper left")
    ax.set_title("σ(t) and s(t)")
    sig = np.array([float(proc.sigma(x)) if x > 0 else 0.0 for x in t])
    i = np.arange(len(t))
    pos = sig > 0
    axes[0, 1].semilogy(i[pos], sig[pos], "o-", ms=3)
    axes[0, 1].set_title("σ_i")
    axes[0, 1].set_xlabel("i")
    lam = -np.log(sig[pos])
    axes[1, 0].plot(i[pos], lam, "o-", ms=3)
    axes[1, 0].set_title("λ_i = −ln σ_i")
    axes[1, 0].set_xlabel("i")
    if len(lam) > 1:
        axes[1, 1].plot(i[pos][:-1], np.diff(lam), "o-", ms=3, label="h_i in λ")
        axes[1, 1].plot(i[:-1], -np.diff(t), "s-", ms=3, label="Δt_i")
        axes[1, 1].set_yscale("log")
        axes[1, 1].legend()
    axes[1, 1].set_title("step size")
    axes[1, 1].set_xlabel("i")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
