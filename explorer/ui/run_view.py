"""The Run tab's views: the step's samples, the schedule, the trajectories, a step slider.

It draws :class:`StepFrame` s — live ones from the worker during a run, and frames of
a finished :class:`RunRecord` when the slider moves. Which sample views are shown
depends on the denoiser: image mosaics (+ zoom) for pictures, point clouds over the
density for 2-D toys.
"""
from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QSplitter, QStackedWidget, QVBoxLayout, QWidget

from explorer.core.denoiser import Denoiser
from explorer.core.solvers.context import Plan
from explorer.session.status import RunStatus
from explorer.ui.frames import Density, RunRecord, StepFrame, data_rect, default_pixels, gmm_density
from explorer.ui.image_views import MosaicView, ScatterView, ZoomView
from explorer.ui.sigma_view import SigmaView
from explorer.ui.trajectory_views import ImageTrajectoryView, PathView

MAX_PIXELS = 8
NOISY_TIP = ("The noisy state xₜ/s(t), divided per step by √(1+σ²/h²) (h: half the data range) around the "
             "range's middle, so its spread stays about the data's and early steps are not saturated noise. "
             "Click a tile to enlarge it.")


class RunView(QWidget):
    """Sample views, step slider, σ(t) view and trajectory view.

    Signals:
        pixelsChanged(object): the tuple of (row, col) pixels to trace changed.
    """

    pixelsChanged = Signal(object)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.record: Optional[RunRecord] = None
        self.frame: Optional[StepFrame] = None
        self.pixels: tuple[tuple[int, int], ...] = ()
        self.kind = "image"
        self.zoom_sample = 0
        self.data_density: Optional[Density] = None
        self._build()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.denoised_grid = MosaicView("x₀ = D(x; σ)", "the estimate at this step",
                                        "The denoiser's estimate of the clean samples at this step's σ. Click a tile to enlarge it.")
        self.noisy_grid = MosaicView("noisy xₜ/s(t)", "normalised per step",
                                     NOISY_TIP)
        self.zoom = ZoomView()
        self.denoised_points = ScatterView("x₀ estimates D(x; σ)")
        self.noisy_points = ScatterView("xₜ / s(t) over p(x; σ)")
        self.no_picture = QLabel()
        self.no_picture.setAlignment(Qt.AlignCenter)
        self.no_picture.setWordWrap(True)
        image_row, points_row = QSplitter(Qt.Horizontal), QSplitter(Qt.Horizontal)
        for w in (self.denoised_grid, self.noisy_grid, self.zoom):
            image_row.addWidget(w)
        image_row.setSizes([400, 400, 220])
        points_row.addWidget(self.denoised_points)
        points_row.addWidget(self.noisy_points)
        self.samples = QStackedWidget()
        for w in (image_row, points_row, self.no_picture):
            self.samples.addWidget(w)
        self.sigma_view = SigmaView()
        self.paths = PathView()
        self.image_paths = ImageTrajectoryView()
        self.trajectories = QStackedWidget()
        self.trajectories.addWidget(self.image_paths)
        self.trajectories.addWidget(self.paths)
        self.bottom = QSplitter(Qt.Horizontal)
        self.bottom.addWidget(self.sigma_view)
        self.bottom.addWidget(self.trajectories)
        self.bottom.setSizes([380, 700])
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setObjectName("step_slider")
        self.slider.setEnabled(False)
        self.slider.setToolTip("Scrub the steps of the finished run (← → keys)")
        self.slider.valueChanged.connect(self._slider_moved)
        self.step_label = QLabel("no run yet")
        self.step_label.setFixedWidth(360)  # a fixed width: new text never re-lays out the row
        slider_row = QHBoxLayout()
        slider_row.addWidget(QLabel("Step"))
        slider_row.addWidget(self.slider, 1)
        slider_row.addWidget(self.step_label)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.samples, 1)
        top_layout.addLayout(slider_row)
        self.splitter = QSplitter(Qt.Vertical)
        self.splitter.addWidget(top)
        self.splitter.addWidget(self.bottom)
        self.splitter.setSizes([430, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)
        self.denoised_grid.tileClicked.connect(self._tile_clicked)
        self.noisy_grid.tileClicked.connect(self._tile_clicked)
        self.zoom.pixelClicked.connect(self._add_pixel)
        for key, step in ((Qt.Key_Left, -1), (Qt.Key_Right, 1), (Qt.Key_PageUp, -10), (Qt.Key_PageDown, 10)):
            shortcut = QShortcut(QKeySequence(key), self, context=Qt.WidgetWithChildrenShortcut)
            shortcut.activated.connect(lambda s=step: self.step_by(s))

    # ------------------------------------------------------------------ denoiser, plan
    def set_denoiser(self, denoiser: Denoiser) -> None:
        """Pick the views for this kind of data, and draw a 2-D toy's density."""
        self.record, self.frame = None, None
        self.slider.setEnabled(False)
        self.step_label.setText("no run yet")
        shape = tuple(denoiser.shape)
        if denoiser.is_image:
            self.kind = "image"
            self.samples.setCurrentIndex(0)
            self.trajectories.setCurrentIndex(0)
        elif shape == (2,):
            self.kind = "points"
            self.samples.setCurrentIndex(1)
            self.trajectories.setCurrentIndex(1)
            self.data_density = gmm_density(denoiser, 0.0, data_rect(denoiser))
            self.paths.set_background(self.data_density)
        else:
            self.kind = "other"
            self.no_picture.setText(f"Samples of shape {list(shape)} are neither pictures nor 2-D points; "
                                    "their paths are shown below, projected by PCA.")
            self.samples.setCurrentIndex(2)
            self.trajectories.setCurrentIndex(0)
        self.image_paths.set_projection(None)
        self.image_paths.set_data_range(tuple(denoiser.data_range))
        if denoiser.is_image:
            colour = shape[0] == 3
            self.image_paths.traces.setLabel("left", "pixel value (mean of R, G, B)" if colour else "pixel value")
        kept = tuple(p for p in self.pixels if denoiser.is_image and p[0] < shape[1] and p[1] < shape[2])
        self.set_pixels(kept or default_pixels(shape))

    def set_plan(self, plan: Optional[Plan]) -> None:
        self.sigma_view.set_plan(plan)
        if plan is not None:
            self.image_paths.set_sigma_span([float(plan.process.sigma(t)) for t in (plan.t[0], plan.t[-1], plan.t[-2] if len(plan.t) > 1 else plan.t[0])])

    # ------------------------------------------------------------------ frames
    def show_frame(self, frame: StepFrame, live: bool = True) -> None:
        """Draw one step (live frames during a run, slider frames afterwards)."""
        self.frame = frame
        if self.kind == "image":
            self._show_images(frame)
        elif self.kind == "points":
            self._show_points(frame, live)
        if frame.pixel_traces is not None or self.kind != "points":
            self.image_paths.show_frame(frame)
        self.sigma_view.set_current(frame.index, frame.t, frame.sigma)
        total = f" of {frame.total}" if frame.total is not None else ""
        order = f", order {frame.order}" if frame.order else ""
        self.step_label.setText(f"step {frame.index}{total}: σ = {frame.sigma:.4g}, t = {frame.t:.4g}, NFE {frame.nfe}{order}")

    def _show_images(self, frame: StepFrame) -> None:
        self.denoised_grid.show_mosaic(frame.denoised_image, frame.layout,
                                       hint="" if frame.denoised_image is not None else "the first x₀ estimate comes with step 1")
        self.noisy_grid.show_mosaic(frame.noisy_image, frame.layout)
        self.zoom.show_tiles(self.zoom_sample, frame.denoised_image, frame.noisy_image, frame.layout)

    def _show_points(self, frame: StepFrame, live: bool) -> None:
        dens = frame.density
        self.noisy_points.show_points(frame.noisy_points, dens)
        self.denoised_points.show_points(frame.denoised_points, self.data_density, None,
                                         hint="" if frame.denoised_points is not None else "x₀ estimates come with step 1")
        if live or self.record is None:
            self.paths.show_frame(frame)
        else:
            full = self.record.frame(self.record.num_states - 1)
            self.paths.show_frame(frame, paths=full.paths, evals=full.eval_points, sigmas=full.sigmas)

    def show_record(self, record: Optional[RunRecord]) -> None:
        """A finished run (or None): enable the slider and show its last step."""
        self.record = record
        if record is None or record.num_states == 0:
            self.slider.setEnabled(False)
            self.image_paths.set_projection(None)
            self.step_label.setText("no run yet")
            return
        self.image_paths.set_projection(record.projection() if self.kind != "points" else None)
        self.slider.blockSignals(True)
        self.slider.setRange(0, record.num_states - 1)
        self.slider.setValue(record.num_states - 1)
        self.slider.blockSignals(False)
        self.slider.setEnabled(True)
        record.pixels = self.pixels or record.pixels
        frame = record.frame(record.num_states - 1)
        if frame is self.frame:  # the live view drew this very frame a moment ago: only the PCA step is new
            self.image_paths.mark_step(frame.index)
        else:
            self.show_frame(frame, live=False)

    def sigma_mode(self) -> str:
        """The lower σ plot's choice (a key of :data:`explorer.ui.sigma_view.MODES`)."""
        return str(self.sigma_view.mode_box.value() or "sigma")

    def select_sigma_mode(self, mode: str) -> bool:
        return self.sigma_view.mode_box.select(mode)

    def show_status(self, status: RunStatus) -> None:
        """The run's status: while running the slider waits at the start; once a run ends it takes the focus."""
        if status.running:
            if status.step == 0:
                self.begin_run()
        elif status.state == "finished":
            self.slider.setFocus()

    def begin_run(self) -> None:
        """A run started: the slider waits at the start until it ends."""
        self.slider.setEnabled(False)
        self.slider.blockSignals(True)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.image_paths.set_projection(None)

    def step_by(self, delta: int) -> None:
        if self.slider.isEnabled():
            self.slider.setValue(max(0, min(self.slider.maximum(), self.slider.value() + delta)))

    def _slider_moved(self, value: int) -> None:
        if self.record is not None:
            self.show_frame(self.record.frame(value), live=False)

    # ------------------------------------------------------------------ pixels, zoom
    def _tile_clicked(self, sample: int, row: int, col: int) -> None:
        self.zoom_sample = sample
        self._add_pixel(row, col)

    def _add_pixel(self, row: int, col: int) -> None:
        pixel = (row, col)
        pixels = tuple(p for p in self.pixels if p != pixel) + (pixel,)
        self.image_paths.set_highlight(pixel)  # the clicked pixel's curves stand out, labelled
        self.set_pixels(pixels[-MAX_PIXELS:])

    def set_pixels(self, pixels: tuple[tuple[int, int], ...]) -> None:
        """Trace these pixels (in the live run and in the finished one)."""
        self.pixels = pixels
        self.pixelsChanged.emit(pixels)
        if self.record is not None and pixels:
            self.record.pixels = pixels
            self.show_frame(self.record.frame(self.slider.value()), live=False)
        elif self.frame is not None and self.kind == "image":
            self._show_images(self.frame)
