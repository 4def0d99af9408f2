"""Views of one step's samples: image mosaics, an enlarged sample, 2-D point clouds.

Every graphics item is made once and updated with ``setImage``/``setData``; images
are uint8 with fixed levels (0–255, i.e. the denoiser's data range), so a frame never
triggers an autoscale or a reallocation of items.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from explorer.ui.frames import Density, MosaicLayout
from explorer.ui.sigma_view import allow_narrow
from explorer.ui.plot_items import grid_axes

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="w", foreground="k")

DENSITY_LUT = np.linspace([255, 255, 255], [95, 130, 190], 256).astype(np.uint8)
LEVELS = (0, 255)


def _image_plot(title: str, subtitle: str = "") -> tuple[pg.GraphicsLayoutWidget, pg.ViewBox, pg.ImageItem, pg.TextItem]:
    """A frameless, aspect-locked image box under a short title and a smaller grey subtitle line,
    with a centred hint text. Neither line sets the widget's minimum width: a title wider than
    a narrow window's column (the xₜ one at 1024×640) used to push the mosaic's right tiles out
    of view, so the lines are kept short and may clip, the picture never."""
    widget = pg.GraphicsLayoutWidget()
    widget.setMinimumSize(160, 160)
    widget.ci.setContentsMargins(2, 2, 2, 2)
    widget.ci.setSpacing(0)
    allow_narrow(widget.addLabel(title, row=0, col=0, size="10pt"))
    allow_narrow(widget.addLabel(subtitle or "&nbsp;", row=1, col=0, size="8pt", color="#666"))
    box = widget.addViewBox(row=2, col=0, lockAspect=True, invertY=True, enableMouse=True)
    image = pg.ImageItem()
    box.addItem(image)
    hint = pg.TextItem("", color=(110, 110, 110), anchor=(0.5, 0.5))
    box.addItem(hint, ignoreBounds=True)
    return widget, box, image, hint


def _as_image(mosaic: np.ndarray) -> np.ndarray:
    return mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic


class MosaicView(QWidget):
    """A grid of samples (one uint8 mosaic); clicking a tile reports (sample, row, col).

    Signals:
        tileClicked(int, int, int): sample index, pixel row and column inside the tile.
    """

    tileClicked = Signal(int, int, int)

    def __init__(self, title: str, subtitle: str = "", tooltip: str = "", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.widget, self.box, self.image, self.hint = _image_plot(title, subtitle)
        self.widget.setToolTip(tooltip)
        self.layout_: Optional[MosaicLayout] = None
        self._shape: Optional[tuple[int, ...]] = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)
        self.image.mouseClickEvent = self._clicked  # type: ignore[assignment]

    def show_mosaic(self, mosaic: Optional[np.ndarray], layout: Optional[MosaicLayout], hint: str = "") -> None:
        """Draw a mosaic (None: keep the frame's size, blank it and show ``hint``)."""
        if mosaic is None:
            if self._shape is not None:
                self.image.setImage(np.full(self._shape, 235, np.uint8), levels=LEVELS, autoLevels=False)
            self.hint.setText(hint)
            self._centre_hint()
            return
        img = _as_image(mosaic)
        self.hint.setText("")
        self.image.setImage(img, levels=LEVELS, autoLevels=False)
        self.layout_ = layout
        if img.shape != self._shape:
            self._shape = img.shape
            self.box.setRange(QRectF(0, 0, img.shape[1], img.shape[0]), padding=0.01)

    def _centre_hint(self) -> None:
        if self._shape is not None:
            self.hint.setPos(self._shape[1] / 2, self._shape[0] / 2)

    def _clicked(self, event) -> None:  # noqa: ANN001 - pyqtgraph's mouse event
        if self.layout_ is None:
            return
        pos = event.pos()
        hit = self.layout_.locate(pos.x(), pos.y())
        if hit is not None:
            event.accept()
            self.tileClicked.emit(*hit)


class ZoomView(QWidget):
    """One sample, large: its x₀ estimate and its noisy state side by side.

    Signals:
        pixelClicked(int, int): row and column of a clicked pixel.
    """

    pixelClicked = Signal(int, int)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.widget = pg.GraphicsLayoutWidget()
        self.widget.setMinimumSize(160, 160)
        self.widget.setToolTip("Click a pixel to trace its value against σ")
        self.title = self.widget.addLabel("sample 0", row=0, col=0, size="10pt")
        self.items: list[pg.ImageItem] = []
        for row, name in ((1, "x₀"), (3, "xₜ / s(t)")):
            box = self.widget.addViewBox(row=row, col=0, lockAspect=True, invertY=True)
            item = pg.ImageItem()
            box.addItem(item)
            item.mouseClickEvent = self._clicked  # type: ignore[assignment]
            self.items.append(item)
            self.widget.addLabel(name, row=row + 1, col=0, size="9pt")
        self.sample = 0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)

    def show_tiles(self, sample: int, denoised: Optional[np.ndarray], noisy: Optional[np.ndarray],
                   layout: Optional[MosaicLayout]) -> None:
        """Cut sample ``sample``'s tile out of the two mosaics and show it enlarged."""
        if layout is None or sample >= layout.count:
            return
        self.sample = sample
        self.title.setText(f"sample {sample}")
        for item, mosaic in zip(self.items, (denoised, noisy)):
            if mosaic is None:
                item.clear()
                continue
            row, col = divmod(sample, layout.columns)
            y, x = layout.pad + row * (layout.height + layout.pad), layout.pad + col * (layout.width + layout.pad)
            fresh = item.image is None or item.image.shape[:2] != (layout.height, layout.width)
            item.setImage(_as_image(mosaic[y:y + layout.height, x:x + layout.width]), levels=LEVELS, autoLevels=False)
            if fresh:
                item.getViewBox().setRange(QRectF(0, 0, layout.width, layout.height), padding=0.02)

    def _clicked(self, event) -> None:  # noqa: ANN001
        pos = event.pos()
        event.accept()
        self.pixelClicked.emit(int(pos.y()), int(pos.x()))


class ScatterView(QWidget):
    """2-D samples of one step as dots over the density they are drawn from."""

    def __init__(self, title: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.widget = pg.PlotWidget(title=title, axisItems=grid_axes())
        self.widget.setMinimumSize(160, 160)
        self.plot = self.widget.getPlotItem()
        self.plot.setAspectLocked(True)
        self.density = pg.ImageItem()
        self.density.setLookupTable(DENSITY_LUT)
        self.density.setZValue(-10)
        self.plot.addItem(self.density)
        self.dots = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(20, 40, 110, 200))
        self.plot.addItem(self.dots)
        self.hint = pg.TextItem("", color=(110, 110, 110), anchor=(0.5, 0.5))
        self.plot.addItem(self.hint, ignoreBounds=True)
        self._rect: Optional[tuple[float, ...]] = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.widget)

    def show_points(self, points: Optional[np.ndarray], density: Optional[Density], rect: Optional[tuple[float, ...]] = None,
                    hint: str = "") -> None:
        """Draw the points (None: clear them and show ``hint``) over ``density``; fit ``rect``."""
        if density is not None:
            self.density.setImage(np.sqrt(density.image), levels=(0, float(np.sqrt(density.image.max())) or 1.0), autoLevels=False)
            self.density.setRect(QRectF(*density.rect))
        area = rect or (density.rect if density is not None else None)
        if points is None:
            self.dots.setData([], [])
        else:
            ok = np.isfinite(points).all(1)
            self.dots.setData(points[ok, 0], points[ok, 1])
        self.hint.setText(hint)
        if area is not None:
            self.hint.setPos(area[0] + area[2] / 2, area[1] + area[3] / 2)
            if area != self._rect:
                self._rect = area
                self.plot.setRange(QRectF(*area), padding=0.0)
