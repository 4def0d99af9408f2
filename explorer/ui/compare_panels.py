"""The Compare tab's column panels and the step control that moves them all.

Each panel shows one column's cached frame (:class:`~explorer.session.comparison.Frame`)
for the step control's position: the slider only looks frames up, it never computes
one. The panels sit in a horizontal scroll area, so more columns scroll instead of
widening the window.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QComboBox, QGraphicsItem, QHBoxLayout, QLabel, QScrollArea, QSizePolicy, QSlider, QVBoxLayout, QWidget,
)

from explorer.core.compare import column_label
from explorer.export.grids import _HEAT
from explorer.export.images import grid_shape
from explorer.session.comparison import MAX_TILES, ComparisonSession, Frame
from explorer.ui.compare_model import ComparisonModel
from explorer.ui.plot_items import LazyMenuViewBox

VIEWS = {"x0": "x₀ estimate", "xt": "noisy xₜ", "diff": "difference"}  # short: the step row fits 1024×640
PANEL_MIN_WIDTH = 148  # four columns side by side in a 1024×640 window; more scroll
PANEL_MIN_HEIGHT = 80  # the picture shrinks in a short window rather than being cut off at the bottom
TILE_PAD = 1  # the mosaics' padding (explorer.session.comparison.image_mosaic)
SEED_POINTS = 7  # the seed labels' font size
SEED_MIN_TILE_PX = 30  # tiles drawn narrower than this carry no seed label


class ElidedLines(QLabel):
    """A label of a few lines, each cut with "…" to the label's width (the whole text is the tooltip).

    Why: word-wrapped, a column title of two lines became three or four in a narrow panel
    (1024×640 with four columns), and the picture under it lost that height.
    """

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumWidth(10)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)

    def set_lines(self, text: str) -> None:
        if text != self._full:
            self._full = text
            self.setToolTip(text)
            self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        metrics, width = self.fontMetrics(), max(10, self.contentsRect().width())
        self.setText("\n".join(metrics.elidedText(line, Qt.ElideRight, width) for line in self._full.split("\n")))


class SeedLabels(pg.GraphicsObject):
    """Every tile's seed at its top-left corner, painted by one item at screen resolution.

    Why one item: a pg.TextItem per tile cost about 1.5 ms each to make, so a column's first
    picture (16 labels) held the GUI thread for 25 ms. Labels go unpainted on tiles drawn
    narrower than SEED_MIN_TILE_PX (16 tiles in a 1024×640 window), where they covered the
    pictures.
    """

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[tuple[float, float, str]] = []  # (x, y) of the tile's corner in image pixels, text
        self.tile_width = 0
        self._rect = QRectF()
        self._widths: dict[str, int] = {}
        self.font = QFont()
        self.font.setPointSize(SEED_POINTS)
        # painted again only when the labels or the zoom change, not with every new picture under them
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    def set_labels(self, labels: list[tuple[float, float, str]], tile_width: int, rect: QRectF) -> None:
        self.prepareGeometryChange()
        self.labels, self.tile_width, self._rect = labels, tile_width, rect
        self._widths: dict[str, int] = {}  # each text's width in the label font, measured at the first paint
        self.update()

    def drawn(self, scale: float) -> bool:
        """Whether labels are painted at ``scale`` screen pixels per image pixel."""
        return bool(self.labels) and self.tile_width * scale >= SEED_MIN_TILE_PX

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return self._rect

    def paint(self, painter, *_: object) -> None:  # noqa: ANN001 - Qt's painter
        transform = painter.transform()
        if not self.drawn(abs(transform.m11())):
            return
        painter.resetTransform()  # text at screen resolution, whatever the zoom
        painter.setFont(self.font)
        metrics = painter.fontMetrics()
        widths = self._widths
        for x, y, text in self.labels:
            corner = transform.map(QPointF(x, y))
            if text not in widths:
                widths[text] = metrics.horizontalAdvance(text)
            box = QRectF(corner.x(), corner.y(), widths[text] + 4, metrics.height())
            painter.fillRect(box, QColor(0, 0, 0, 150))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignCenter, text)


class ColumnPanel(QWidget):
    """One column: a title (solver, steps, NFE, σ and error of the shown state) and its picture."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.title = ElidedLines()
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setMinimumSize(PANEL_MIN_WIDTH, PANEL_MIN_HEIGHT)
        self.box = LazyMenuViewBox(lockAspect=True, invertY=True)
        self.graphics.addItem(self.box)
        self.image = pg.ImageItem()
        self.box.addItem(self.image)
        self.links = pg.PlotCurveItem(pen=pg.mkPen(170, 170, 170, 200))
        self.ref_dots = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(0, 0, 0, 220))
        self.dots = pg.ScatterPlotItem(size=4, pen=None)
        for item in (self.links, self.ref_dots, self.dots):
            self.box.addItem(item)
            item.hide()  # shown with 2-D points only: hidden, empty items cost nothing to paint
        self._shape: Optional[tuple[int, ...]] = None
        self._color = ""
        self._shown: tuple = ()  # (the mosaic or frame shown, how): a redraw of the same is skipped
        self._has_points = False
        self.seeds = SeedLabels()  # each image tile's seed: the seed that draws it again
        self.box.addItem(self.seeds, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.graphics, 1)

    def set_title(self, text: str, color: str) -> None:
        self.title.set_lines(text)
        if color != self._color:  # a style sheet re-polishes the label: only when the colour changes
            self._color = color
            self.title.setStyleSheet(f"QLabel {{ border-top: 5px solid {color}; padding-top: 2px; }}")

    def show_image(self, mosaic: Optional[np.ndarray], seed: int = 0, count: int = 0,
                   tile_size: tuple[int, int] = (0, 0)) -> None:
        """A column's mosaic of ``count`` tiles of ``tile_size`` (h, w), each labelled with its
        sample's seed (sample b is drawn by seed + b, as ``--seed`` reproduces it). The same
        mosaic again draws nothing: a finished column redraws its own panel only."""
        if self._showing(mosaic, ("image", seed, count, tile_size)):
            return
        self._clear_points()
        if mosaic is None:
            self.image.clear()
            self._show_seeds(0, 0, (0, 0))
            return
        self._show_seeds(seed, count, tile_size)
        img = mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic
        self.box.invertY(True)
        self.image.setImage(img, levels=(0, 255), autoLevels=False)
        if img.shape != self._shape:
            self._shape = img.shape
            self.box.setDefaultPadding(0.01)
            self.box.enableAutoRange()  # follows the panel's resizes too, keeping the mosaic whole

    def _showing(self, what: object, how: tuple) -> bool:
        """Note what the picture is to show; True when it shows that already (the very same object)."""
        same = bool(self._shown) and self._shown[0] is what and self._shown[1] == how
        self._shown = (what, how)
        return same

    def _clear_points(self) -> None:
        if self._has_points:
            self._has_points = False
            for item in (self.dots, self.ref_dots, self.links):
                item.setData([], [])
                item.hide()

    def _show_seeds(self, seed: int, count: int, tile_size: tuple[int, int]) -> None:
        """Label each tile's top-left corner with its seed (no labels for ``count`` 0)."""
        h, w = tile_size
        cols = grid_shape(count)[1] if count else 1
        corners = [divmod(k, cols) for k in range(count)]
        labels = [(TILE_PAD + q * (w + TILE_PAD), TILE_PAD + r * (h + TILE_PAD), f"{seed + k}") for k, (r, q) in enumerate(corners)]
        rows = (count + cols - 1) // cols if count else 0
        rect = QRectF(0, 0, TILE_PAD + cols * (w + TILE_PAD), TILE_PAD + rows * (h + TILE_PAD))
        if labels != self.seeds.labels:
            self.seeds.set_labels(labels, w, rect)
        self.graphics.setToolTip(f"tiles: seeds {seed}–{seed + count - 1}, left to right, top to bottom" if count else "")

    def show_points(self, frame: Frame, color: str, extent: tuple[float, float, float, float]) -> None:
        """2-D samples in the column's colour; in the difference view also the reference points joined to them."""
        if self._showing(frame, ("points", color, extent)):
            return
        self._has_points = True
        for item in (self.dots, self.ref_dots, self.links):
            item.show()
        self._show_seeds(0, 0, (0, 0))
        self.image.clear()
        self._shape = None
        self.box.invertY(False)
        points = frame.points
        ok = np.isfinite(points).all(1)
        self.dots.setData(points[ok, 0], points[ok, 1], brush=pg.mkBrush(color))
        if frame.reference is None:
            self.ref_dots.setData([], [])
            self.links.setData([], [])
        else:
            pairs = np.stack([points, frame.reference], 1).reshape(-1, 2)
            self.ref_dots.setData(frame.reference[:, 0], frame.reference[:, 1])
            self.links.setData(pairs[:, 0], pairs[:, 1], connect="pairs")
        x0, x1, y0, y1 = extent
        self.box.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0.0)


class ColorBar(QLabel):
    """The difference pictures' colour scale: black (0) to pale yellow (the level shown)."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        stops = ", ".join(f"stop:{k / (len(_HEAT) - 1):.2f} rgb({int(r)},{int(g)},{int(b)})" for k, (r, g, b) in enumerate(_HEAT))
        self.setStyleSheet(f"QLabel {{ background: qlineargradient(x1:0, y1:0, x2:1, y2:0, {stops}); color: white;"
                           " padding: 1px 4px; border-radius: 2px; }")
        self.setMinimumWidth(84)

    def set_limit(self, limit: float) -> None:
        self.setText(f"|Δ| 0 … {limit:.2g}")
        self.setToolTip(f"The difference pictures' colour scale: |difference from the reference| from 0 (black) to {limit:.3g} (pale yellow) and above")


def _union(extents: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    if not extents:
        return (-1.0, 1.0, -1.0, 1.0)
    return (min(e[0] for e in extents), max(e[1] for e in extents), min(e[2] for e in extents), max(e[3] for e in extents))


class _RowScroll(QScrollArea):
    """Scrolls sideways only: the row of panels always takes the viewport's height (pyqtgraph's
    tall size hint otherwise made the row taller than the view, cutting the pictures off)."""

    def resizeEvent(self, event) -> None:  # noqa: N802, ANN001 - Qt's name
        super().resizeEvent(event)
        if self.widget() is not None:
            self.widget().setMaximumHeight(max(1, self.viewport().height()))


class PanelsView(QWidget):
    """The step control (view, sync mode, slider) above one panel per column, in a scroll area.

    Signals:
        stepShown(int, object): the slider's position and the σ it stands for (None in step mode).
    """

    stepShown = Signal(int, object)

    def __init__(self, model: ComparisonModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model = model
        self.view_box = QComboBox()
        for key, text in VIEWS.items():
            self.view_box.addItem(text, key)
        self.sync_box = QComboBox()
        self.sync_box.addItem("step index", "step")
        self.sync_box.addItem("noise level σ", "sigma")
        self.view_box.setToolTip("x₀ estimate D(x; σ), the noisy state xₜ/s(t), or |difference| from the reference at the same σ")
        for box in (self.view_box, self.sync_box):  # narrow windows: the slider keeps its room
            box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(9)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setMinimumWidth(80)
        self.step_label = QLabel()
        self.step_label.setMinimumWidth(72)  # 'σ = 0.0123', 'step 199'
        self.color_bar = ColorBar()
        self.note = QLabel()
        self.note.setStyleSheet("QLabel { color: #555; }")
        row = QHBoxLayout()
        for w in (QLabel("show"), self.view_box, QLabel("sync by"), self.sync_box):
            row.addWidget(w)
        row.addWidget(self.slider, 1)
        row.addWidget(self.step_label)
        row.addWidget(self.color_bar)
        self.panels: list[ColumnPanel] = []  # one per column, in order
        self._spare: list[ColumnPanel] = []  # hidden panels of removed columns, kept for the next ones
        self.holder = QWidget()
        self.panels_row = QHBoxLayout(self.holder)
        self.panels_row.setContentsMargins(0, 0, 0, 0)
        self.empty = QLabel("Add columns from the control panel's configuration, then Run all.")
        self.empty.setAlignment(Qt.AlignCenter)
        self.panels_row.addWidget(self.empty)
        self.scroll = _RowScroll()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.scroll.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.holder)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.note)
        layout.addWidget(self.scroll, 1)
        self.view_box.currentIndexChanged.connect(lambda *_: self.show_step())
        self.sync_box.currentIndexChanged.connect(lambda *_: self.reset_slider())
        self.slider.valueChanged.connect(lambda *_: self.show_step())
        model.columnsChanged.connect(self._columns_changed)
        model.resultsChanged.connect(self.reset_slider)
        self._columns_changed()

    @property
    def session(self) -> ComparisonSession:
        return self.model.session

    def _columns_changed(self) -> None:
        """One panel per column. A removed column's panel is hidden and kept for the next new
        column, and a batch of changes (a parameter grid) is laid out and painted once: making
        a panel and laying the row out again for each one took 13 ms a column."""
        n = len(self.session.columns)
        self.holder.setUpdatesEnabled(False)
        try:
            while len(self.panels) > n:
                panel = self.panels.pop()
                panel.hide()
                self._spare.append(panel)  # the row keeps it, after the shown ones
            while len(self.panels) < n:
                panel = self._spare.pop() if self._spare else self._new_panel()
                self.panels.append(panel)
                panel.show()
            self.empty.setVisible(n == 0)
            self.reset_slider()
        finally:
            self.holder.setUpdatesEnabled(True)

    def _new_panel(self) -> ColumnPanel:
        panel = ColumnPanel()
        at = self.panels_row.count() - len(self._spare)  # before the spare ones (hidden, at the end)
        self.panels_row.insertWidget(at, panel, 1)
        return panel

    def reset_slider(self) -> None:
        """New results or sync mode: the slider spans them and moves to the end."""
        top = self.session.slider_top(self.sync())
        self.slider.blockSignals(True)
        self.slider.setRange(0, top)
        self.slider.setValue(top)
        self.slider.blockSignals(False)
        self.show_step()

    def sync(self) -> str:
        return self.sync_box.currentData()

    def view(self) -> str:
        return self.view_box.currentData()

    def shown_indices(self) -> list[Optional[int]]:
        return self.session.shown_indices(self.slider.value(), self.sync())

    def show_step(self) -> None:
        """Draw the cached frame of every column for the slider's position (no tensor work)."""
        s, view, pos = self.session, self.view(), self.slider.value()
        sigma = s.sigma_at(pos) if self.sync() == "sigma" else None
        self.step_label.setText(f"σ = {sigma:.4g}" if sigma is not None else f"step {pos}")
        no_reference = view == "diff" and s.reference is None
        self.note.setText("No reference yet: press Reference to see differences." if no_reference else "")
        self.note.setVisible(no_reference)
        self.color_bar.setVisible(view == "diff" and not no_reference and not s.is_points)
        self.color_bar.set_limit(s.limit)
        self.stepShown.emit(pos, sigma)
        indices = self.shown_indices()
        frames = [None if i is None else s.frame(k, i, view) for k, i in enumerate(indices)]
        extent = _union([f.extent for f in frames if f is not None and f.extent is not None])
        colors = s.colors()
        for k, panel in enumerate(self.panels):
            self._title(k, panel, indices[k], frames[k], colors[k])
            frame = frames[k]
            if frame is None:
                panel.show_image(None)
            elif frame.points is not None:
                panel.show_points(frame, colors[k], extent)
            else:
                panel.show_image(frame.image, s.seed, min(s.batch, MAX_TILES), tuple(s.shape[-2:]))

    def _title(self, k: int, panel: ColumnPanel, i: Optional[int], frame: Optional[Frame], color: str) -> None:
        config, run = self.session.columns[k], self.session.runs[k]
        if run is None or i is None:
            panel.set_title(f"{k + 1}. {column_label(config)}\n(not run)", color)
            return
        err = self.session.step_error(k, i)
        err_text = "" if self.session.reference is None else ("\nRMSE —" if err is None else f"\nRMSE {err:.3e}")
        sigma = frame.sigma if frame is not None else self.session.prepared[k].sigmas[i]
        panel.set_title(f"{k + 1}. {column_label(config, run.trajectory)}\nstep {i} · σ={sigma:.3g}{err_text}", color)
