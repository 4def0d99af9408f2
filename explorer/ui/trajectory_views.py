"""How samples travel: particle paths for 2-D toys, pixel traces and PCA paths for images.

All paths of a run are one ``PlotCurveItem`` whose ``connect`` array breaks the line
between particles (thousands of particles, one item); the solver's stage evaluations
are one :class:`~explorer.ui.plot_items.Dots` item and the current step another (a
ScatterPlotItem styled each of a frame's thousands of points in Python: 10 ms a frame).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from explorer.session.comparison import path_arrays
from explorer.ui.frames import Density, StepFrame
from explorer.ui.image_views import DENSITY_LUT
from explorer.ui.plot_items import Dots, grid_axes
from explorer.ui.sigma_view import allow_narrow, steady_width

PATH_PEN = pg.mkPen(40, 60, 120, 45)
EVAL_BRUSH = pg.mkBrush(230, 120, 0, 110)
CURRENT_BRUSH = pg.mkBrush(210, 0, 0, 230)
JUMP_PEN = pg.mkPen(0, 150, 70, 200, width=1.5, style=Qt.DashLine)
JUMP_NAME = "restart jump"
# No grids on these live plots: a grid makes the axes span the plot, so every data
# update repaints them (text included), several milliseconds a frame.
PCA_WAITING, PCA_SHOWN = "PCA paths (after the run)", "Paths, PCA over the run"  # the PCA plot's titles
PIXEL_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (140, 86, 75), (227, 119, 194),
                 (127, 127, 127), (188, 189, 34)]


def jump_segments(paths: np.ndarray, sigmas: np.ndarray) -> Optional[np.ndarray]:
    """[2, B·J, 2] start and end of every particle's forward jumps (steps whose σ rises, as
    Restart's noise injections are recorded), or None when the run has none."""
    n = min(len(paths), len(sigmas))
    jumps = np.nonzero(np.asarray(sigmas[1:n]) > np.asarray(sigmas[: n - 1]))[0]
    if not len(jumps):
        return None
    return np.concatenate([paths[j : j + 2] for j in jumps], axis=1)


def _sample_lines(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [S] and values [S, B] → one broken curve, one segment per sample."""
    return path_arrays(np.stack([np.broadcast_to(x[:, None], values.shape), values], -1))


class PathView(QWidget):
    """2-D toys: every particle's path from noise to data over the data density."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.widget = pg.PlotWidget(axisItems=grid_axes())
        self.widget.setMinimumSize(240, 200)
        plot = self.plot = self.widget.getPlotItem()
        allow_narrow(plot.titleLabel)  # the title must not widen the plot past its widget
        plot.setTitle("Paths x/s(t), noise → data (orange: evaluations, red: this step)", size="9pt")
        plot.setAspectLocked(True)
        self.density = pg.ImageItem()
        self.density.setLookupTable(DENSITY_LUT)
        self.density.setZValue(-10)
        plot.addItem(self.density)
        self.curve = pg.PlotCurveItem(pen=PATH_PEN)
        plot.addItem(self.curve)
        self.jumps = pg.PlotCurveItem(pen=JUMP_PEN)  # Restart's forward jumps (σ rises), dashed
        self.jumps.setZValue(5)
        plot.addItem(self.jumps)
        self.legend = plot.addLegend(offset=(6, 6))
        self.evals = Dots(2.5, EVAL_BRUSH)
        plot.addItem(self.evals)
        self.current = Dots(5, CURRENT_BRUSH)
        plot.addItem(self.current)
        self._rect: Optional[tuple[float, ...]] = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)

    def set_background(self, density: Optional[Density]) -> None:
        """The data density (σ = 0) under the paths; its square is the initial view."""
        if density is None:
            self.density.clear()
            return
        self.density.setImage(np.sqrt(density.image), levels=(0, float(np.sqrt(density.image.max())) or 1.0), autoLevels=False)
        self.density.setRect(QRectF(*density.rect))
        if density.rect != self._rect:
            self._rect = density.rect
            self.plot.setRange(QRectF(*density.rect), padding=0.0)

    def show_frame(self, frame: StepFrame, paths: Optional[np.ndarray] = None, evals: Optional[np.ndarray] = None,
                   sigmas: Optional[np.ndarray] = None) -> None:
        """Paths up to the frame's step (or the whole run's, given with its σ's), its evaluations and its state."""
        paths = frame.paths if paths is None else paths
        if paths is None:
            return
        x, y, connect = path_arrays(paths)
        self.curve.setData(x, y, connect=connect)
        self._show_jumps(paths, frame.sigmas if sigmas is None else sigmas)
        ev = frame.eval_points if evals is None else evals
        if ev is not None and len(ev):
            ok = np.isfinite(ev).all(1)
            self.evals.setData(ev[ok, 0], ev[ok, 1])
        else:
            self.evals.setData([], [])
        if frame.noisy_points is not None:
            pts = frame.noisy_points
            ok = np.isfinite(pts).all(1)
            self.current.setData(pts[ok, 0], pts[ok, 1])


    def _show_jumps(self, paths: np.ndarray, sigmas: np.ndarray) -> None:
        """Draw the forward jumps apart from the descent, with a legend entry while there are any."""
        segments = jump_segments(paths, sigmas)
        if segments is None:
            self.jumps.setData([], [])
            self.legend.removeItem(self.jumps)
            return
        x, y, connect = path_arrays(segments)
        self.jumps.setData(x, y, connect=connect)
        if self.legend.getLabel(self.jumps) is None:
            self.legend.addItem(self.jumps, JUMP_NAME)


STACK_BELOW_PX = 560  # narrower than this, the PCA plot goes under the pixel plot


class ImageTrajectoryView(QWidget):
    """Images: chosen pixels' values against σ (log, noise on the left) and PCA paths."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(240, 200)
        self.traces = self.graphics.addPlot(row=0, col=0, axisItems=grid_axes())
        self.traces.setTitle("Pixels of x/s against σ (click an image to add one)", size="9pt")
        self.traces.setLogMode(x=True)
        self.traces.getViewBox().invertX(True)
        self.traces.setLabel("bottom", "σ (log; the final σ = 0 is drawn at the right edge)")
        self.traces.setLabel("left", "pixel value")
        self.trace_curves: list[pg.PlotCurveItem] = []
        self.highlight: Optional[tuple[int, int]] = None  # the last clicked pixel, drawn bold and labelled
        self.highlight_label = pg.TextItem(anchor=(1, 1), color=(0, 0, 0))
        self.traces.addItem(self.highlight_label, ignoreBounds=True)
        self.highlight_label.hide()
        self.trace_evals = Dots(4, EVAL_BRUSH)
        self.traces.addItem(self.trace_evals, ignoreBounds=True)
        self.sigma_line = pg.InfiniteLine(angle=90, pen=pg.mkPen(200, 0, 0, 150, width=1))
        self.traces.addItem(self.sigma_line, ignoreBounds=True)
        self.pca = self.graphics.addPlot(row=0, col=1, axisItems=grid_axes())
        self.pca.setTitle(PCA_SHOWN, size="9pt")
        self.pca.setLabel("bottom", "PC 1 of x/s÷√(1+σ²)")
        self.pca.setLabel("left", "PC 2")
        self.pca_curve = pg.PlotCurveItem(pen=PATH_PEN)
        self.pca_evals = Dots(3, EVAL_BRUSH)
        self.pca_current = Dots(6, CURRENT_BRUSH)
        for item in (self.pca_curve, self.pca_evals):
            self.pca.addItem(item)
        # the current step's states lie on the paths: left out of the auto-range, the view no longer
        # shifts by a marker's half-width as the slider moves (which redrew both axes, 5 ms a step)
        self.pca.addItem(self.pca_current, ignoreBounds=True)
        self._pca_paths: Optional[np.ndarray] = None
        self.graphics.ci.layout.setColumnStretchFactor(0, 3)
        self.graphics.ci.layout.setColumnStretchFactor(1, 2)
        for plot in (self.traces, self.pca):
            plot.setMinimumWidth(150)
            allow_narrow(plot.titleLabel)
        steady_width(self.pca.titleLabel, (PCA_WAITING, PCA_SHOWN))
        self.pca.setTitle(PCA_SHOWN, size="9pt")
        self._data_range: tuple[float, float] = (-1.0, 1.0)
        self._floor = 1e-3
        self._stacked = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics)

    def resizeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt's name
        """Side by side when there is room, one above the other when narrow (they overlapped at 1024 px)."""
        super().resizeEvent(event)
        stacked = self.width() < STACK_BELOW_PX
        if stacked != self._stacked:
            self._stacked = stacked
            layout = self.graphics.ci
            layout.removeItem(self.pca)
            layout.addItem(self.pca, row=1 if stacked else 0, col=0 if stacked else 1)
            layout.layout.setColumnStretchFactor(1, 0 if stacked else 2)

    def set_data_range(self, data_range: tuple[float, float]) -> None:
        """Frame the pixel values around the data range; early noisy values run off the top and bottom."""
        lo, hi = data_range
        pad = 0.6 * (hi - lo)
        self._data_range = (lo, hi)
        self.traces.setYRange(lo - pad, hi + pad, padding=0)

    def set_sigma_span(self, sigmas: Sequence[float]) -> None:
        """Fix the σ axis to a run's σ values (known from its plan before it starts), so
        growing traces never rescale the plot; σ = 0 is drawn at a third of the smallest σ."""
        positive = [s for s in sigmas if s > 0]
        if not positive:
            return
        self._floor = min(positive) / 3
        self.traces.setXRange(np.log10(self._floor), np.log10(max(positive)), padding=0.03)

    def _sigma_axis(self, sigmas: np.ndarray) -> np.ndarray:
        """σ values with σ = 0 moved to the floor (log axis)."""
        return np.where(sigmas > 0, sigmas, self._floor)

    def show_frame(self, frame: StepFrame) -> None:
        """Pixel traces up to this frame's step (they grow during a run)."""
        traces = frame.pixel_traces
        count = 0 if traces is None else traces.shape[2]
        while len(self.trace_curves) < count:
            curve = pg.PlotCurveItem(pen=pg.mkPen(*PIXEL_COLOURS[len(self.trace_curves) % len(PIXEL_COLOURS)], 110))
            self.traces.addItem(curve, ignoreBounds=True)
            self.trace_curves.append(curve)
        sig = self._sigma_axis(frame.sigmas)
        bold = frame.pixels.index(self.highlight) if self.highlight in frame.pixels[:count] else None
        for p, curve in enumerate(self.trace_curves):
            if p < count:
                x, y, connect = _sample_lines(np.log10(sig), traces[:, :, p])
                colour = PIXEL_COLOURS[p % len(PIXEL_COLOURS)]
                curve.setPen(pg.mkPen(*colour, 255, width=2.5) if p == bold else pg.mkPen(*colour, 110 if bold is None else 60))
                curve.setZValue(10 if p == bold else 0)
                curve.setData(x, y, connect=connect)
                curve.show()
            else:
                curve.hide()
        if bold is not None:
            row, col = self.highlight
            self.highlight_label.setText(f"pixel ({row}, {col}), {traces.shape[1]} samples")
            self.highlight_label.setPos(float(np.log10(sig[-1])), float(traces[-1, 0, bold]))
            self.highlight_label.show()
        else:
            self.highlight_label.hide()
        if frame.eval_traces is not None and len(frame.eval_sigmas):
            e, b, p = frame.eval_traces.shape
            xs = np.repeat(np.log10(frame.eval_sigmas), b * p)
            self.trace_evals.setData(xs, frame.eval_traces.reshape(-1))
        else:
            self.trace_evals.setData([], [])
        self.sigma_line.setValue(float(np.log10(sig[-1])))
        self.mark_step(frame.index)

    def set_highlight(self, pixel: Optional[tuple[int, int]]) -> None:
        """Draw this pixel's curves bold and labelled from the next frame on (None: no highlight)."""
        self.highlight = pixel

    def set_projection(self, projection: Optional[tuple[np.ndarray, np.ndarray]]) -> None:
        """The whole run's PCA paths (None: clear and show the hint)."""
        if projection is None:
            self._pca_paths = None
            for item in (self.pca_curve, self.pca_evals, self.pca_current):
                item.setData([], [])
            self.pca.setTitle(PCA_WAITING, size="9pt")
            return
        paths, evals = projection
        self._pca_paths = paths
        x, y, connect = path_arrays(paths)
        self.pca_curve.setData(x, y, connect=connect)
        self.pca_evals.setData(evals[:, 0], evals[:, 1]) if len(evals) else self.pca_evals.setData([], [])
        self.pca.setTitle(PCA_SHOWN, size="9pt")
        self.pca.enableAutoRange()

    def mark_step(self, index: int) -> None:
        """The states of step ``index`` on the PCA paths (none before the run's paths exist)."""
        if self._pca_paths is None or index >= len(self._pca_paths):
            self.pca_current.setData([], [])
            return
        pts = self._pca_paths[index]
        self.pca_current.setData(pts[:, 0], pts[:, 1])
