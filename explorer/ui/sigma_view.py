"""σ(t) and s(t) of the chosen process with the run's time steps, and per-step plots.

Drawn from the :class:`Plan` alone, so it updates the moment a control changes,
before any run. The lower plot switches between σᵢ (log), λᵢ = −ln σᵢ, the step in
λ (hᵢ = λᵢ₊₁ − λᵢ, DPM-Solver's step size) and the step in t (log).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
import torch
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from explorer.core.solvers.context import Plan
from explorer.ui.plot_items import grid_axes
from explorer.ui.widgets import DataCombo

def _narrow_min(label: pg.LabelItem) -> None:
    """LabelItem.updateMin, then a 10-px minimum width: the title may be clipped, the plot never."""
    pg.LabelItem.updateMin(label)
    height = label._sizeHint[Qt.SizeHint.MinimumSize][1]  # LabelItem answers sizeHint from this table
    label._sizeHint[Qt.SizeHint.MinimumSize] = (10, height)
    label.setMinimumWidth(10)


def allow_narrow(label: pg.LabelItem) -> None:
    """Keep a plot title from setting its plot's minimum width. pyqtgraph sizes a label to its
    text again on every setText and every resize (``updateMin``), so a long title widened the
    plot past its widget and cut its right side off (the σ(t) plot at 1024×640)."""
    label.updateMin = lambda: _narrow_min(label)
    label.updateMin()


def steady_width(label: pg.LabelItem, texts: Sequence[str], size: str = "9pt") -> None:
    """Give a title the preferred width of the widest of the texts it shows (after
    :func:`allow_narrow`), so switching between them no longer moves the columns of its layout.

    Why: the PCA plot's title changes at the start and the end of every run; its width
    shifted the split between the two trajectory plots by 3 px, which resized both and
    redrew their four axes in one paint (20 ms of the GUI thread at a run's start).
    """
    widths = []
    for text in texts:
        label.setText(text, size=size)
        widths.append(label._sizeHint[Qt.SizeHint.PreferredSize][0])
    narrow, wide = label.updateMin, max(widths)

    def pinned() -> None:
        narrow()
        label._sizeHint[Qt.SizeHint.PreferredSize] = (wide, label._sizeHint[Qt.SizeHint.PreferredSize][1])
        label.updateGeometry()

    label.updateMin = pinned
    label.updateMin()


def _title(plot: pg.PlotItem, text: str) -> None:
    """A 9-pt title that never sets the plot's minimum width."""
    allow_narrow(plot.titleLabel)
    plot.setTitle(text, size="9pt")


TOP_TITLE = "σ(t) solid (left), s(t) dashed (right)"
MODES = {
    "sigma": "σᵢ against i",
    "lambda": "λᵢ = −ln σᵢ against i",
    "h": "step hᵢ = λᵢ₊₁ − λᵢ against i",
    "dt": "step Δtᵢ = tᵢ − tᵢ₊₁ against i",
}
SIGMA_PEN = pg.mkPen((30, 70, 160), width=2)
SCALE_PEN = pg.mkPen((200, 110, 20), width=2, style=pg.QtCore.Qt.DashLine)


def plan_curves(plan: Plan, n: int = 400) -> dict[str, np.ndarray]:
    """Dense σ(t), s(t) over the plan's time span and the values at its steps (float64)."""
    t_steps = np.asarray(plan.t, dtype=np.float64)
    positive = t_steps[t_steps > 0]
    t_lo, t_hi = float(positive.min()), float(positive.max())
    log_t = t_hi / t_lo > 100
    dense = np.geomspace(t_lo, t_hi, n) if log_t else np.linspace(t_lo, t_hi, n)
    proc = plan.process
    as_t = torch.as_tensor
    sig = proc.sigma(as_t(dense, dtype=torch.float64)).numpy()
    scale = proc.s(as_t(dense, dtype=torch.float64)).numpy()
    sig_steps = proc.sigma(as_t(t_steps, dtype=torch.float64)).numpy()
    s_steps = proc.s(as_t(t_steps, dtype=torch.float64)).numpy()
    return {"t": dense, "sigma": sig, "s": scale, "t_steps": t_steps, "sigma_steps": sig_steps,
            "s_steps": s_steps, "log_t": np.array(log_t)}


def step_series(sigmas: np.ndarray, t: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(i, value) of the lower plot; entries that are infinite (σ = 0) are left out."""
    i = np.arange(len(sigmas), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = -np.log(sigmas)
        if mode == "sigma":
            x, y = i, sigmas
        elif mode == "lambda":
            x, y = i, lam
        elif mode == "h":
            x, y = i[:-1], np.diff(lam)
        else:
            x, y = i[:-1], -np.diff(t)
    keep = np.isfinite(y) & ((y > 0) if mode in ("sigma", "dt") else True)
    return x[keep], y[keep]


class SigmaView(QWidget):
    """The schedule plots; ``set_plan`` redraws, ``set_current`` marks one step."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.mode = "sigma"
        self.plan: Optional[Plan] = None
        self._sigmas = np.zeros(0)
        self._t = np.zeros(0)
        self._log_t = False
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(240, 200)
        self.top = self.graphics.addPlot(row=0, col=0, axisItems=grid_axes("left", "bottom", "right"))
        self.bottom = self.graphics.addPlot(row=1, col=0, axisItems=grid_axes())
        self._build_top()
        self._build_bottom()

        self.mode_box = DataCombo([(text, key) for key, text in MODES.items()])
        self.mode_box.currentIndexChanged.connect(lambda _: self.set_mode(self.mode_box.value()))
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 0, 4, 0)
        bar.addWidget(QLabel("Lower plot:"))
        bar.addWidget(self.mode_box, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(bar)
        layout.addWidget(self.graphics, 1)

    def _build_top(self) -> None:
        top = self.top
        _title(top, TOP_TITLE)
        top.setLabel("bottom", "t")
        top.setLabel("left", "σ(t)")
        top.setLogMode(y=True)
        top.showGrid(x=True, y=True, alpha=0.15)
        self.sigma_curve = top.plot(pen=SIGMA_PEN)
        self.step_marks = pg.ScatterPlotItem(size=6, pen=pg.mkPen(20, 20, 20), brush=pg.mkBrush(255, 255, 255))
        top.addItem(self.step_marks)
        self.current_mark = pg.ScatterPlotItem(size=11, pen=pg.mkPen(200, 0, 0, width=2), brush=None)
        top.addItem(self.current_mark, ignoreBounds=True)
        self.scale_box = pg.ViewBox()
        top.showAxis("right")
        top.scene().addItem(self.scale_box)
        top.getAxis("right").linkToView(self.scale_box)
        top.getAxis("right").setLabel("s(t)")
        self.scale_box.setXLink(top)
        self.scale_box.setYRange(0, 1.05)
        self.scale_curve = pg.PlotCurveItem(pen=SCALE_PEN)
        self.scale_marks = pg.ScatterPlotItem(size=5, pen=pg.mkPen(200, 110, 20), brush=pg.mkBrush(255, 255, 255))
        self.scale_box.addItem(self.scale_curve)
        self.scale_box.addItem(self.scale_marks)
        top.vb.sigResized.connect(self._sync_scale_box)

    def _sync_scale_box(self) -> None:
        """The s(t) box overlays the σ(t) box exactly (pyqtgraph's two-axis pattern)."""
        self.scale_box.setGeometry(self.top.vb.sceneBoundingRect())
        self.scale_box.linkedViewChanged(self.top.vb, self.scale_box.XAxis)

    def _build_bottom(self) -> None:
        bottom = self.bottom
        bottom.setLabel("bottom", "step i")
        bottom.showGrid(x=True, y=True, alpha=0.15)
        self.series = bottom.plot(pen=SIGMA_PEN, symbol="o", symbolSize=5, symbolBrush=(255, 255, 255))
        self.series_current = pg.ScatterPlotItem(size=11, pen=pg.mkPen(200, 0, 0, width=2), brush=None)
        bottom.addItem(self.series_current, ignoreBounds=True)

    # ------------------------------------------------------------------ updates
    def set_plan(self, plan: Optional[Plan]) -> None:
        """Redraw for a new plan (None: the settings are invalid; the last plan stays, faded and titled so)."""
        stale = plan is None
        for item in (self.top, self.bottom):
            item.setOpacity(0.25 if stale else 1.0)
        title = "invalid settings: the last valid plan, faded" if stale else TOP_TITLE
        _title(self.top, title)
        if plan is None:
            return
        self.plan = plan
        c = plan_curves(plan)
        log_t = self._log_t = bool(c["log_t"])
        self.top.setLogMode(x=log_t, y=True)
        self.top.getAxis("right").setLogMode(False, False)  # s(t) stays linear
        self.sigma_curve.setData(c["t"], c["sigma"])
        keep = c["t_steps"] > 0
        self.step_marks.setData(_maybe_log(c["t_steps"][keep], log_t), np.log10(c["sigma_steps"][keep]))
        self.scale_curve.setData(_maybe_log(c["t"], log_t), c["s"])
        self.scale_marks.setData(_maybe_log(c["t_steps"][keep], log_t), c["s_steps"][keep])
        self.top.setLabel("bottom", "t (log; t = 0 off the axis)" if log_t and not keep.all() else "t")
        self._sigmas, self._t = c["sigma_steps"], c["t_steps"]
        self._draw_series()
        self.top.getViewBox().autoRange(padding=0.05)  # fixed once per plan: moving the step mark repaints nothing else
        self.scale_box.setYRange(0, 1.05)
        self._sync_scale_box()
        self.set_current(None)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self._draw_series()

    def _draw_series(self) -> None:
        log_y = self.mode in ("sigma", "dt")
        self.bottom.setLogMode(y=log_y)
        self.bottom.setLabel("left", MODES[self.mode].split(" against")[0])
        x, y = step_series(self._sigmas, self._t, self.mode)
        self.series.setData(x, y)
        _title(self.bottom, MODES[self.mode] + ("   (σ = 0 is off the axis)" if len(x) < len(self._sigmas) - (self.mode in ("h", "dt")) else ""))
        self.bottom.getViewBox().autoRange(padding=0.05)

    def set_current(self, index: Optional[int], t: Optional[float] = None, sigma: Optional[float] = None) -> None:
        """Circle step ``index`` (its actual t and σ when given, e.g. for adaptive runs)."""
        if index is None or self.plan is None:
            self.current_mark.setData([], [])
            self.series_current.setData([], [])
            return
        if t is None and index < len(self._t):
            t, sigma = float(self._t[index]), float(self._sigmas[index])
        if t is None or sigma is None or not (t > 0 and sigma > 0):
            self.current_mark.setData([], [])
        else:
            self.current_mark.setData([math.log10(t) if self._log_t else t], [math.log10(sigma)])
        x, y = step_series(self._sigmas, self._t, self.mode)
        hit = x == index
        if hit.any():
            yv = y[hit]
            self.series_current.setData([index], np.log10(yv) if self.mode in ("sigma", "dt") else yv)
        else:
            self.series_current.setData([], [])


def _maybe_log(values: np.ndarray, log: bool) -> np.ndarray:
    return np.log10(values) if log else values
