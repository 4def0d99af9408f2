"""pyqtgraph items that repaint within the GUI thread's 16 ms budget.

Why: with a grid shown, an axis draws every grid line across the whole plot in a
translucent pen, and Qt's raster engine blends a translucent cosmetic line pixel by
pixel: the σ overlay's two axes (about 150 grid lines at 1400×300 px) took 10–20 ms to
paint, and they were painted again for every change anywhere in the plot (a moved
marker, a new curve), since a recorded axis picture is replayed whole however small
the exposed area. :class:`GridAxis` draws its axis-aligned lines as filled one-pixel
rectangles (the same pixels and the same blending, about 50× faster; the vertical ones
of one length as a single stretched one-pixel-high picture), straight onto a
device-pixel cache, so other items' changes only copy it. :class:`MarkedCurve` is a
line with markers made in a fraction of a PlotDataItem's time, :class:`Dots` many
markers of one look set in a fraction of a ScatterPlotItem's.
"""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pyqtgraph as pg
from pyqtgraph import debug
from pyqtgraph.graphicsItems.LegendItem import ItemSample
from pyqtgraph.graphicsItems.ScatterPlotItem import drawSymbol, renderSymbol
from pyqtgraph.Qt.internals import PrimitiveArray
from PySide6.QtCore import QLineF, QPointF, QRect, QRectF
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPicture, QPixmap, QPolygonF, QTransform
from PySide6.QtWidgets import QGraphicsItem

Filled = tuple[QRectF, QColor]


class GridAxis(pg.AxisItem):
    """An axis whose tick and grid lines are filled rectangles, drawn onto a device-pixel cache."""

    def __init__(self, orientation: str, **kwargs: object) -> None:
        super().__init__(orientation, **kwargs)
        # repainted only when the axis itself changes (its range, size or style): pyqtgraph
        # calls update() then, which drops the cache
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._specs = None

    def prepare(self) -> None:
        """Work out the ticks and labels now, if the axis changed, rather than in its next paint
        (a slot that changed the range calls this, so its paint only draws)."""
        if self.picture is None:  # pyqtgraph's mark that the range, size or style changed
            picture = QPicture()  # held here: measuring may resize the axis, which drops self.picture
            measure = QPainter(picture)  # the labels are measured as pyqtgraph measures them
            try:
                if self.style["tickFont"]:
                    measure.setFont(self.style["tickFont"])
                self._specs = self.generateDrawSpecs(measure)
            finally:
                measure.end()
            self.picture = picture

    @debug.warnOnException  # an exception out of paint() crashes Qt
    def paint(self, p: QPainter, *_: object) -> None:
        """Draw the axis (pyqtgraph records it as a picture and replays that: the cache
        already keeps the result, so it is drawn once, directly)."""
        self.prepare()
        if self._specs is not None:
            p.save()
            if self.style["tickFont"]:
                p.setFont(self.style["tickFont"])
            self.drawPicture(p, *self._specs)
            p.restore()

    def drawPicture(self, p: QPainter, axisSpec, tickSpecs, textSpecs) -> None:  # noqa: N802, N803, ANN001 - pyqtgraph's names
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        slow, filled = [], []
        thin: dict[int, bool] = {}  # per pen (one per tick level)
        for pen, a, b in tickSpecs:
            if id(pen) not in thin:
                thin[id(pen)] = thin_pen(pen)
            rect = line_rect(a, b) if thin[id(pen)] else None
            if rect is None:
                slow.append((pen, a, b))
            else:
                filled.append((rect, pen.color()))
        fill_rects(p, filled)
        super().drawPicture(p, axisSpec, slow, textSpecs)


def thin_pen(pen: QPen) -> bool:
    """A cosmetic solid pen one pixel wide (whose straight lines :func:`line_rect` can fill)."""
    return pen.style() == pg.QtCore.Qt.PenStyle.SolidLine and pen.isCosmetic() and pen.widthF() <= 1


def line_rect(a: QPointF, b: QPointF) -> QRectF | None:
    """The one-pixel rectangle that covers the pixels a :func:`thin_pen` line from ``a`` to
    ``b`` covers, for a horizontal or vertical line (None for any other line).

    Across the line the pixels are the same (centres within half a pixel of it); along it
    the rectangle runs from ``a`` to ``b``, and :func:`fill_rects` fills the end pixels too.
    """
    ax, ay, bx, by = a.x(), a.y(), b.x(), b.y()
    if ax == bx:
        return QRectF(ax - 0.5, min(ay, by), 1.0, abs(by - ay))
    if ay == by:
        return QRectF(min(ax, bx), ay - 0.5, abs(bx - ax), 1.0)
    return None


def fill_rects(p: QPainter, filled: list[Filled]) -> None:
    """Fill translucent one-pixel-wide rectangles standing for straight lines (:func:`line_rect`).

    When the painter only moves (as it paints an axis), each covers exactly the device
    pixels Qt's line would (the column or row the line crosses, from the pixel holding one
    end to the pixel holding the other), and the vertical ones of one length are drawn
    as one row of pixels stretched over their height. Why: Qt blends a rectangle one row at
    a time, so a hundred vertical grid lines were 15,000 one-pixel spans (2–3 ms); the row,
    stretched, is blended a whole row at a time.
    """
    t = p.transform()
    if t.type() not in (QTransform.TransformationType.TxNone, QTransform.TransformationType.TxTranslate):
        for rect, color in filled:
            p.fillRect(rect, color)
        return
    dx, dy = t.dx(), t.dy()
    tall: dict[tuple[int, int], list[tuple[int, QColor]]] = defaultdict(list)
    p.save()
    p.resetTransform()
    for rect, color in filled:
        if rect.width() == 1.0:  # vertical: x is the rectangle's middle
            rows = (math.floor(rect.top() + dy), math.floor(rect.bottom() + dy))
            tall[rows].append((math.floor(rect.left() + 0.5 + dx), color))
        else:
            row, first, last = math.floor(rect.top() + 0.5 + dy), math.floor(rect.left() + dx), math.floor(rect.right() + dx)
            p.fillRect(QRect(first, row, last - first + 1, 1), color)
    p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
    for (top, bottom), columns in tall.items():
        _fill_columns(p, top, bottom, columns)
    p.restore()


def _fill_columns(p: QPainter, top: int, bottom: int, columns: list[tuple[int, QColor]]) -> None:
    """Device columns, each in its colour, from row ``top`` to row ``bottom``: one row of
    premultiplied pixels (lines on one column composed in order), stretched."""
    first = min(col for col, _ in columns)
    row = np.zeros((1, max(col for col, _ in columns) - first + 1, 4), dtype=np.float64)  # B, G, R, A
    for col, color in columns:
        a = color.alpha() / 255.0
        src = np.array([color.blue() * a, color.green() * a, color.red() * a, 255.0 * a])
        row[0, col - first] = src + row[0, col - first] * (1.0 - a)  # over what is already there
    pixels = np.ascontiguousarray(np.rint(row).astype(np.uint8))
    image = QImage(pixels.data, pixels.shape[1], 1, pixels.shape[1] * 4, QImage.Format.Format_ARGB32_Premultiplied)
    p.drawImage(QRect(first, top, pixels.shape[1], bottom - top + 1), image)


def settle_range(plot: pg.PlotItem, sides: tuple[str, ...] = ("left",)) -> None:
    """Apply a plot's pending auto-range now and work out the ticks of the axes on ``sides``
    (:meth:`GridAxis.prepare`); the other axes' are worked out in the next paint.

    Why: pyqtgraph does all of it in the next paint, so the paint after a slot that added a
    curve to an empty plot held the GUI thread 12–16 ms, both axes' ticks included. One
    axis here and one there share the work about evenly between the slot and the paint
    (both axes here made the slot the long one).
    """
    box = plot.getViewBox()
    if any(box.state["autoRange"]):
        box.updateAutoRange()
    for side in sides:
        axis = plot.getAxis(side)
        if isinstance(axis, GridAxis) and axis.isVisible():
            axis.prepare()


def grid_axes(*sides: str) -> dict[str, GridAxis]:
    """``axisItems`` for a PlotItem or PlotWidget: a :class:`GridAxis` on each side named
    (only the sides shown: pyqtgraph shows every axis it is given)."""
    return {side: GridAxis(side) for side in (sides or ("left", "bottom"))}


class PointsItem(pg.GraphicsObject):
    """What pyqtgraph asks of a data item (auto-range bounds, a legend name, ``plotData``) for
    an item drawn at points, reaching ``pixelPadding()`` pixels beyond them. Subclasses give
    the points drawn (:meth:`points`: finite, in the axes' units) and a paint."""

    def __init__(self) -> None:
        super().__init__()
        self._bounds: QRectF | None = None

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def implements(self, interface: str | None = None) -> bool | list[str]:
        ints = ["plotData"]
        return ints if interface is None else interface in ints

    def name(self) -> str | None:
        return None  # in no legend, unless a subclass is named

    def pixelPadding(self) -> float:  # noqa: N802 - pyqtgraph's name
        return 0.0

    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange=None) -> tuple[float | None, float | None]:  # noqa: N802, N803, ANN001
        x, y = self.points()
        values, other = (x, y) if ax == 0 else (y, x)
        if orthoRange is not None:
            values = values[(other >= orthoRange[0]) & (other <= orthoRange[1])]
        if not len(values):
            return (None, None)
        if frac < 1.0:
            return (float(np.percentile(values, 50 * (1 - frac))), float(np.percentile(values, 50 * (1 + frac))))
        return (float(values.min()), float(values.max()))

    def _reach(self) -> float:
        """How far the drawing reaches beyond the points, in pixels (for the bounding rectangle)."""
        return self.pixelPadding()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        if self._bounds is None:
            x, y = self.points()
            if not len(x):
                self._bounds = QRectF()
                return self._bounds
            px = py = 0.0
            vx, vy = self.pixelVectors()
            if vx is not None and vy is not None:
                px, py = vx.length() * self._reach(), vy.length() * self._reach()
            self._bounds = QRectF(x.min() - px, y.min() - py, x.max() - x.min() + 2 * px, y.max() - y.min() + 2 * py)
        return self._bounds

    def prepareGeometryChange(self) -> None:  # noqa: N802 - Qt's name
        self._bounds = None
        super().prepareGeometryChange()

    def viewTransformChanged(self) -> None:  # noqa: N802 - pyqtgraph's name
        super().viewTransformChanged()
        self.prepareGeometryChange()  # the reach is in pixels


class MarkedCurve(PointsItem):
    """A line through points with a round marker on each, as ``PlotItem.plot(x, y, symbol="o")``
    draws it, in one light item.

    Why: ``plot()`` makes a PlotDataItem holding a PlotCurveItem and a ScatterPlotItem, and
    every option the plot then applies (log mode, alpha, FFT, downsampling, clipping) sets
    the scatter's data again: 5–8 ms of the GUI thread per curve, each time a Compare column
    finished or an overlay's tab was picked. This item keeps the data given (``xData``,
    ``yData``, as PlotDataItem does), maps it for log axes itself, draws the line as the
    curve item draws a solid opaque pen (segments) and the markers from one pre-rendered
    symbol picture, as the scatter item does. It joins the plot's legend and auto-range like
    a PlotDataItem (``implements("plotData")``, ``dataBounds``, ``pixelPadding``).
    """

    def __init__(self, x, y, pen: QPen, brush: object = None, size: float = 0, name: str | None = None) -> None:  # noqa: ANN001
        super().__init__()
        self.xData = np.asarray(x, dtype=np.float64)
        self.yData = np.asarray(y, dtype=np.float64)
        self._log = (False, False)
        self._pen = pen
        brush = pg.mkBrush(brush) if brush is not None else None
        self.opts = {"pen": pen, "brush": brush, "size": size, "symbol": "o" if size and brush is not None else None,
                     "name": name, "antialias": False}
        self._symbol: QImage | None = None
        if self.opts["symbol"]:
            self._symbol = renderSymbol("o", size, pg.mkPen(None), brush)
        self._shown = self._display()

    # ------------------------------------------------------------------ what pyqtgraph asks of a data item
    def points(self) -> tuple[np.ndarray, np.ndarray]:
        return self._shown

    def name(self) -> str | None:
        return self.opts["name"]

    def setLogMode(self, x: bool, y: bool) -> None:  # noqa: N802 - pyqtgraph's name
        if (x, y) != self._log:
            self._log = (x, y)
            self.prepareGeometryChange()
            self._shown = self._display()
            self.informViewBoundsChanged()
            self.update()

    def pixelPadding(self) -> float:  # noqa: N802 - pyqtgraph's name
        """How far it draws beyond the data, in pixels, as a PlotDataItem answers: its line's
        (0.7072 × the pen's width) when it has one, else its markers' (0.7072 × (size + 1))."""
        if self._pen.style() != pg.QtCore.Qt.PenStyle.NoPen:
            return 0.7072 * self._pen.widthF() if self._pen.isCosmetic() else 0.0
        return 0.7072 * (self.opts["size"] + 1.0) if self._symbol is not None else 0.0

    # ------------------------------------------------------------------ geometry and paint
    def _display(self) -> tuple[np.ndarray, np.ndarray]:
        """The points drawn: log10 on log axes, non-finite ones left out."""
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log10(self.xData) if self._log[0] else self.xData
            y = np.log10(self.yData) if self._log[1] else self.yData
        ok = np.isfinite(x) & np.isfinite(y)
        return x[ok], y[ok]

    def _reach(self) -> float:
        return max(self.pixelPadding(), 0.7072 * (self.opts["size"] + 1.0), 1.0)  # the markers drawn whole

    @debug.warnOnException  # an exception out of paint() crashes Qt
    def paint(self, p: QPainter, *_: object) -> None:
        x, y = self._shown
        if not len(x):
            return
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        if len(x) > 1 and self._pen.style() != pg.QtCore.Qt.PenStyle.NoPen:
            p.setPen(self._pen)
            if _segments(self._pen):
                p.drawLines([QLineF(x[k], y[k], x[k + 1], y[k + 1]) for k in range(len(x) - 1)])
            else:
                p.drawPolyline(QPolygonF([QPointF(a, b) for a, b in zip(x, y)]))
        if self._symbol is not None:
            transform = p.transform()
            p.resetTransform()
            w, h = self._symbol.width(), self._symbol.height()
            for a, b in zip(x, y):
                centre = transform.map(QPointF(a, b))
                p.drawImage(QRectF(centre.x() - w / 2, centre.y() - h / 2, w, h), self._symbol)


def _segments(pen: QPen) -> bool:
    """Draw as separate segments, as PlotCurveItem does for wide solid opaque pens without antialiasing."""
    return pen.widthF() > 1.0 and pen.style() == pg.QtCore.Qt.PenStyle.SolidLine and pen.isSolid() and pen.color().alphaF() == 1.0


class CurveSample(ItemSample):
    """The legend's sample for a :class:`MarkedCurve`: its line and its marker (without the
    line's pen around the marker, as a PlotDataItem's sample draws it); other items as usual."""

    def paint(self, p: QPainter, *args: object) -> None:
        item = self.item
        if not isinstance(item, MarkedCurve) or not item.isVisible():
            super().paint(p, *args)
            return
        p.setPen(item.opts["pen"])
        p.drawLine(0, 11, 20, 11)
        if item.opts["symbol"]:
            p.translate(10, 10)
            drawSymbol(p, "o", item.opts["size"], pg.mkPen(None), item.opts["brush"])


class Dots(PointsItem):
    """Many markers of one look (symbol, size, pen, brush) at data points, drawn as a
    ScatterPlotItem of one style draws them, pixel for pixel.

    Why: ScatterPlotItem works out each spot's style in Python whenever its data is set,
    about 5 µs a spot, so a frame's 1,800 stage evaluations of a batch-16 Heun run cost the
    GUI thread 10 ms. Here the symbol is rendered once and every point is drawn from that
    picture by one ``drawPixmapFragments`` call. ``data`` holds the points (fields x, y),
    as the scatter item's does.
    """

    def __init__(self, size: float, brush: object, pen: object = None, symbol: str = "o") -> None:
        super().__init__()
        self.opts = {"symbol": symbol, "size": size, "pen": pg.mkPen(pen), "brush": pg.mkBrush(brush), "antialias": False}
        self._pixmap = QPixmap.fromImage(renderSymbol(symbol, size, self.opts["pen"], self.opts["brush"]))
        self.data = np.zeros(0, dtype=[("x", np.float64), ("y", np.float64)])
        self._fragments = PrimitiveArray(QPainter.PixmapFragment, 10)

    def setData(self, x, y) -> None:  # noqa: N802, ANN001 - pyqtgraph's name
        """The points (x and y of equal length; empty ones clear the item)."""
        data = np.zeros(len(x), dtype=self.data.dtype)
        data["x"], data["y"] = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if not len(data) and not len(self.data):
            return
        self.prepareGeometryChange()
        self.data = data
        self.informViewBoundsChanged()
        self.update()

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        finite = np.isfinite(self.data["x"]) & np.isfinite(self.data["y"])
        return self.data["x"][finite], self.data["y"][finite]

    def pixelPadding(self) -> float:  # noqa: N802 - pyqtgraph's name
        return 0.7072 * (self.opts["size"] + self.opts["pen"].widthF())  # as the scatter item pads

    @debug.warnOnException  # an exception out of paint() crashes Qt
    def paint(self, p: QPainter, *_: object) -> None:
        x, y = self.points()
        if not len(x):
            return
        t = p.transform()
        centres = np.clip(np.stack([t.m11() * x + t.m21() * y + t.dx(), t.m12() * x + t.m22() * y + t.dy()], 1), -2**30, 2**30)
        p.resetTransform()
        self._fragments.resize(len(centres))
        frags = self._fragments.ndarray()
        frags[:, 0:2] = centres
        frags[:, 2:6] = (0, 0, self._pixmap.width(), self._pixmap.height())  # the source: the whole symbol
        frags[:, 6:10] = (1.0, 1.0, 0.0, 1.0)  # scale x, scale y, rotation, opacity
        p.drawPixmapFragments(*self._fragments.drawargs(), self._pixmap)


class LazyMenuViewBox(pg.ViewBox):
    """A ViewBox whose right-click menu is built when first asked for.

    Why: pyqtgraph builds the menu (two axis panels of widgets) with the box, 8 ms of the
    13 ms a new Compare column's panel took to make; most boxes are never right-clicked.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(enableMenu=False, **kwargs)
        self.state["enableMenu"] = True  # the menu is on; only its making waits

    def getMenu(self, ev):  # noqa: N802, ANN001, ANN201 - pyqtgraph's name
        if self.menu is None and self.menuEnabled():
            self._applyMenuEnabled()  # pyqtgraph's own way of making the menu
        return self.menu

    def getContextMenus(self, event):  # noqa: N802, ANN001, ANN201 - pyqtgraph's name
        return self.getMenu(event).actions() if self.menuEnabled() else []
