"""The Compare tab's overlays: σ per step, trajectories, error along the run, error against NFE.

Every column is drawn in its own colour (:func:`explorer.core.compare.column_color`), the
same as in the grids and the exported plots; the reference is black and dashed; the sweep
plots solvers, one colour per solver.
A curve is made once per run it shows (a few at a time, the rest in later slots of the
tab's :class:`~explorer.ui.deferred.Deferred` queue), and the current-step marker is one
item moved with ``setValue``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QTabWidget, QVBoxLayout, QWidget,
)

from explorer.core.compare import REFERENCE_COLOR, ColumnError, ColumnRun, solver_color
from explorer.core.solvers import SOLVERS
from explorer.core.sweep import SweepResult
from explorer.session.comparison import OverlayPath
from explorer.ui.deferred import Deferred
from explorer.ui.plot_items import CurveSample, MarkedCurve, grid_axes, settle_range

if TYPE_CHECKING:
    from explorer.ui.compare_model import ComparisonModel

TINY = 1e-300
LEGEND_SHARE = 0.5  # the most of a plot's height its legend may cover
PLOT_MIN_HEIGHT = 110  # the plot of the lower half: with its tab bar under 180 px, so the pictures keep room at 1024×640
CURVES_PER_SLOT = 4  # curves made in one GUI slot (about 2 ms each with its legend entry); the rest in later slots


def pen(color: str, width: float = 1.6, dashed: bool = False) -> "pg.QtGui.QPen":
    return pg.mkPen(color, width=width, style=Qt.DashLine if dashed else Qt.SolidLine)


@dataclass(frozen=True)
class Curve:
    """One curve to show: ``key`` names it, ``sources`` are the objects it is drawn from (the
    same objects: the same picture), ``make`` adds its items to the plot and returns them."""

    key: object
    sources: tuple
    make: Callable[[], list]


def _same(a: tuple, b: tuple) -> bool:
    """The same sources: the very same objects (runs, errors, paths), or equal texts and numbers."""
    return len(a) == len(b) and all(x is y or (type(x) in (str, int, float) and x == y) for x, y in zip(a, b))


class _Plot(QWidget):
    """A titled pyqtgraph plot with a legend and a movable marker line."""

    def __init__(self, title: str, x: str, y: str, log_x: bool = False, log_y: bool = False,
                 marker_angle: Optional[int] = 90, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.deferred: Optional[Deferred] = None  # where curves beyond CURVES_PER_SLOT wait (None: all at once)
        self.widget = pg.PlotWidget(title=title, axisItems=grid_axes())
        self.widget.setMinimumSize(220, PLOT_MIN_HEIGHT)
        self.plot = self.widget.getPlotItem()
        self.plot.setLabel("bottom", x)
        self.plot.setLabel("left", y)
        self.plot.setLogMode(x=log_x, y=log_y)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        # two columns on a translucent ground: four columns' entries in one column covered
        # the curves of a 1024×640 window's plot and ran off its bottom
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextSize="8pt", colCount=2,
                                          brush=pg.mkBrush(255, 255, 255, 190), verSpacing=-4, sampleType=CurveSample)
        self.marker = pg.InfiniteLine(angle=marker_angle, pen=pg.mkPen(150, 150, 150, width=1)) if marker_angle is not None else None
        self.plot.getViewBox().sigResized.connect(self._fit_legend)
        self._drawn: dict[object, tuple[tuple, list]] = {}  # key → (sources, items) of the curves shown
        self._wanted: dict[object, Curve] = {}  # key → curve, of the curves to show
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)

    def _fit_legend(self, *_: object) -> None:
        """Hide the legend where it would cover more than half the plot (a short window): the
        colours are still the columns' of the table and the panels, and the tooltip says so."""
        fits = self.legend.boundingRect().height() <= LEGEND_SHARE * self.plot.getViewBox().height()
        if fits != self.legend.isVisible():
            self.legend.setVisible(fits)
            self.widget.setToolTip("" if fits else "The legend is hidden in so short a plot: each curve has its column's colour (see the table).")

    def clear(self) -> None:
        """Empty the plot before a redraw (whose legend is fitted once the redraw is done)."""
        self.plot.clear()
        self.legend.clear()
        self._drawn.clear()
        self._wanted.clear()
        QTimer.singleShot(0, self, self._fit_legend)
        if self.marker is not None:
            self.plot.addItem(self.marker, ignoreBounds=True)

    def draw_curves(self, curves: Sequence[Curve]) -> None:
        """Show exactly these curves, making items only for those not drawn from the same sources.

        Why: each finished column used to clear and redraw every curve of the plot on the GUI
        thread (at four columns × batch 64, up to 42 ms for the σ plot alone); a curve already
        drawn from the same run now stays, and only the new column's is made. At most
        CURVES_PER_SLOT are made in this slot; the rest follow in later ones.
        """
        self._wanted = {c.key: c for c in curves}
        for key in [k for k, (sources, _) in self._drawn.items() if k not in self._wanted or not _same(sources, self._wanted[k].sources)]:
            for item in self._drawn.pop(key)[1]:
                self.plot.removeItem(item)  # and its legend entry
        if self._make_some() and self.deferred is not None:
            self.deferred.add(self._make_some, key=self, repeat=True)
        QTimer.singleShot(0, self, self._fit_legend)

    def _make_some(self) -> bool:
        """Make up to CURVES_PER_SLOT of the wanted curves not yet drawn (all of them without a
        queue); True while some are still to be made."""
        missing = [c for key, c in self._wanted.items() if key not in self._drawn]
        for c in missing[:CURVES_PER_SLOT] if self.deferred is not None else missing:
            self._drawn[c.key] = (c.sources, c.make())
        if missing:
            settle_range(self.plot)  # the new range and ticks now: the paint after this slot only draws
        if self.deferred is not None and len(missing) > CURVES_PER_SLOT:
            return True
        QTimer.singleShot(0, self, self._fit_legend)
        return False

    def expect(self, x: tuple[float, float], y: tuple[float, float]) -> None:
        """Show this range (in the axes' units: log10 on a log axis) until the first curve comes.

        Why: an empty plot's axis labels (0 … 1) are narrower than a σ or error axis's
        (10² … 10⁻³), so the first curve widened the axis, the plot was laid out again and
        its whole repaint, both axes' ticks worked out twice, came on top of the curve's.
        """
        self.plot.setRange(xRange=x, yRange=y, padding=0)
        self.plot.enableAutoRange()  # an empty plot keeps the range; the first curve sets its own

    def add(self, item: pg.GraphicsObject) -> pg.GraphicsObject:
        """Add an item to the plot (a named one joins the legend) and return it."""
        self.plot.addItem(item)
        return item

    def legend_texts(self) -> list[str]:
        return [label.text for _, label in self.legend.items]


class SigmaOverlay(_Plot):
    """σ of each state against the step index, or σ(t) against each column's own t (log–log),
    one curve per column; the combo box switches."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("σ of each state", "step i", "σ", log_y=True, parent=parent)
        self.axis = QComboBox()
        self.axis.addItem("σᵢ against step i", "step")
        self.axis.addItem("σ(t) against t", "t")
        self.axis.currentIndexChanged.connect(lambda *_: self._draw(fresh=True))
        self.layout().insertWidget(0, self.axis)
        self.expect((0, 18), (-3, 2))  # EDM's σ from 80 to 0.002 over 18 steps
        self._runs: Sequence[Optional[ColumnRun]] = ()
        self._labels: Sequence[str] = ()

    def show_runs(self, runs: Sequence[Optional[ColumnRun]], labels: Sequence[str]) -> None:
        self._runs, self._labels = list(runs), list(labels)
        self._draw()

    def _draw(self, fresh: bool = False) -> None:
        by_t = self.axis.currentData() == "t"
        if fresh:
            self.clear()
            self.plot.setLogMode(x=by_t, y=True)
            self.plot.setLabel("bottom", "t (each column's process)" if by_t else "step i")
            self.plot.setTitle("σ(t) and each column's steps" if by_t else "σ of each state")
            if self.marker is not None:
                self.marker.setVisible(not by_t)
        self.draw_curves([Curve(k, (run, label), lambda run=run, label=label: self._curve(run, label, by_t))
                          for k, (run, label) in enumerate(zip(self._runs, self._labels)) if run is not None])

    def _curve(self, run: ColumnRun, label: str, by_t: bool) -> list:
        sig, t = run.trajectory.sigma.double().numpy(), run.trajectory.t.double().numpy()
        ok = (sig > 0) & (t > 0)
        x = t[ok] if by_t else np.arange(len(sig))[ok]
        return [self.add(MarkedCurve(x, sig[ok], pen(run.color), run.color, 4, name=label))]

    def mark(self, step: Optional[int], sigma: Optional[float]) -> None:
        """In step mode a vertical line at the step; in σ mode a horizontal one at σ."""
        if self.marker is None:
            return
        if sigma is not None and sigma > 0:
            self.marker.setAngle(0)
            self.marker.setValue(math.log10(sigma))
        elif step is not None:
            self.marker.setAngle(90)
            self.marker.setValue(step)


class TrajectoryOverlay(_Plot):
    """2-D: particle paths x/s of each column (and the reference, dashed); images: the
    centre pixel of sample 0 against log σ. The curves come ready-made from the session."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("trajectories", "x", "y", marker_angle=None, parent=parent)

    def show_paths(self, series: Sequence[tuple[str, str, bool, OverlayPath]]) -> None:
        """(label, colour, dashed, path) per curve."""
        if not series:
            self.clear()
            return
        points = series[0][3].points
        if points != getattr(self, "_points", None):  # another kind of data: new axes
            self._points = points
            self.clear()
            self.plot.setLogMode(x=not points, y=False)
            self.plot.setAspectLocked(points)
            self.plot.setLabel("bottom", "x" if points else "σ (log)")
            self.plot.setLabel("left", "y" if points else "centre pixel of sample 0 (x/s)")
            self.plot.setTitle("particle paths x/s (first samples)" if points else "a pixel's value against σ")
            self.plot.getViewBox().invertX(not points)
        self.draw_curves([Curve(label, (path,), lambda label=label, color=color, dashed=dashed, path=path:
                                [self._path_item(label, color, dashed, path)])
                          for label, color, dashed, path in series])

    def _path_item(self, label: str, color: str, dashed: bool, path: OverlayPath) -> pg.GraphicsObject:
        if path.points:
            item = pg.PlotCurveItem(path.x, path.y, connect=path.connect, pen=pen(color, 1.0, dashed), name=label)
            self.plot.addItem(item)  # a named item joins the legend once, by itself
            return item
        return self.add(MarkedCurve(path.x, path.y, pen(color, 1.4, dashed), name=label))


class ErrorOverlay(_Plot):
    """RMSE against the reference at every state with a matching σ, against σ (log–log)."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("error along the run (RMSE vs reference)", "σ", "RMSE", log_x=True, log_y=True, parent=parent)
        self.plot.getViewBox().invertX(True)
        self.expect((-3, 2), (-5, 0))

    def show_errors(self, runs: Sequence[Optional[ColumnRun]], labels: Sequence[str], errors: Sequence[Optional[ColumnError]]) -> None:
        self.draw_curves([Curve(k, (run, label, err), lambda run=run, label=label, err=err: self._curve(run, label, err))
                          for k, (run, label, err) in enumerate(zip(runs, labels, errors)) if run is not None and err is not None])

    def _curve(self, run: ColumnRun, label: str, err: ColumnError) -> list:
        sig, e = np.array(err.step_sigma), np.array(err.step)
        ok = (sig > 0) & np.isfinite(e) & (e > 0)
        return [self.add(MarkedCurve(sig[ok], e[ok], pen(run.color), run.color, 4, name=label))]

    def mark(self, sigma: Optional[float]) -> None:
        if self.marker is not None and sigma is not None and sigma > 0:
            self.marker.setValue(math.log10(sigma))


class SweepPlot(_Plot):
    """Final error against NFE on log–log axes; the legend carries each solver's fitted order."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("error against NFE", "NFE", "final RMSE", log_x=True, log_y=True, marker_angle=None, parent=parent)

    def show_sweep(self, sweep: Optional[SweepResult]) -> None:
        self.clear()
        if sweep is None:
            return
        self.plot.setTitle(f"error against NFE (vs the {sweep.reference_kind})")
        orders = sweep.orders()
        for solver in sweep.solvers:
            pts = [p for p in sweep.of(solver) if p.error > 0 and math.isfinite(p.error)]
            if not pts:
                continue
            order = orders[solver]
            name = f"{solver} (order {order:.2f})" if math.isfinite(order) else solver
            color = solver_color(solver)
            self.add(MarkedCurve([p.nfe for p in pts], [p.error for p in pts], pen(color), color, 6, name=name))


DEFAULT_SWEEP = ("heun", "dpm-solver-3", "dpm-solver++2m")


class OverlayTabs(QTabWidget):
    """The lower half of the Compare tab: the overlays and the sweep panel, observing the model."""

    def __init__(self, model: "ComparisonModel", run_sweep: Callable[[], object], deferred: Optional[Deferred] = None,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model = model
        self.deferred = deferred or Deferred(self)
        self.sigma_plot, self.path_plot, self.error_plot = SigmaOverlay(), TrajectoryOverlay(), ErrorOverlay()
        self.sweep_plot = SweepPlot()
        for plot in (self.sigma_plot, self.path_plot, self.error_plot, self.sweep_plot):
            plot.deferred = self.deferred
        self.addTab(self.sigma_plot, "σ per step")
        self.addTab(self.path_plot, "Trajectories")
        self.addTab(self.error_plot, "Error along the run")
        self.addTab(self._sweep_tab(run_sweep), "Error vs NFE")
        self._stale: set[QWidget] = set()  # overlays whose tab was hidden when the comparison changed
        self.currentChanged.connect(self._draw_current)
        model.columnsChanged.connect(self.redraw)
        model.resultsChanged.connect(self.redraw)
        model.sweepChanged.connect(lambda: self.sweep_plot.show_sweep(model.session.sweep))

    def _sweep_tab(self, run_sweep: Callable[[], object]) -> QWidget:
        self.sweep_solvers = QListWidget()
        self.sweep_solvers.setMaximumWidth(210)
        for name, info in SOLVERS.items():
            if info.adaptive:
                continue
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in DEFAULT_SWEEP else Qt.Unchecked)
            item.setForeground(pg.mkColor(solver_color(name)))
            self.sweep_solvers.addItem(item)
        self.sweep_budgets = QLineEdit("5,10,20,50")
        self.sweep_budgets.setToolTip("NFE budgets, comma-separated")
        self.sweep_button = QPushButton("Run sweep")
        self.sweep_button.setToolTip("Run each checked solver at each NFE (final σ_min, float64) and fit its order")
        self.sweep_button.clicked.connect(lambda *_: run_sweep())
        self.sweep_solvers.setMinimumHeight(40)  # the list scrolls in a short window
        budgets = QHBoxLayout()  # one row: the tab's minimum height is the lower half's
        budgets.addWidget(QLabel("NFE"))
        budgets.addWidget(self.sweep_budgets, 1)
        budgets.addWidget(self.sweep_button)
        side = QVBoxLayout()
        side.addWidget(QLabel("solvers"))
        side.addWidget(self.sweep_solvers, 1)
        side.addLayout(budgets)
        tab = QWidget()
        layout = QHBoxLayout(tab)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(side)
        layout.addWidget(self.sweep_plot, 1)
        return tab

    def checked_solvers(self) -> list[str]:
        items = [self.sweep_solvers.item(i) for i in range(self.sweep_solvers.count())]
        return [item.text() for item in items if item.checkState() == Qt.Checked]

    def show_sweep_tab(self) -> None:
        self.setCurrentIndex(3)

    def redraw(self) -> None:
        """The comparison changed: draw the overlay on show in a slot of its own (the result's
        handler only notes it), the others when their tab is picked (drawing all three after
        every finished column held the GUI thread 3× as long)."""
        self._stale = {self.sigma_plot, self.path_plot, self.error_plot}
        self.deferred.add(self._draw_current, key=self)

    def _draw_current(self, *_: object) -> None:
        plot = self.currentWidget()
        if plot not in self._stale:
            return
        self._stale.discard(plot)
        s = self.model.session
        runs, labels = s.runs, s.labels()
        if plot is self.sigma_plot:
            self.sigma_plot.show_runs(runs, labels)
        elif plot is self.path_plot:
            series = [(label, run.color, False, path) for run, label, path in zip(runs, labels, s.paths()) if path is not None]
            if s.reference_path is not None:
                series.append(("reference", REFERENCE_COLOR, True, s.reference_path))
            self.path_plot.show_paths(series)
        else:
            self.error_plot.show_errors(runs, labels, s.errors())

    def mark(self, step: int, sigma: Optional[float]) -> None:
        """The step control moved: move the σ and error plots' markers."""
        self.sigma_plot.mark(step, sigma)
        self.error_plot.mark(sigma)
