"""What keeps GUI slots short: the Deferred queue, the light plot items, the cached axes,
reused Compare panels, a run's end drawn in pieces, the frozen start-up heap.

Qt runs offscreen; pictures are compared between two ways of drawing on the same machine
(pixels, never timings), and every plot is small.
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPainter, QPen  # noqa: E402

import explorer.ui.image_views  # noqa: E402,F401 - the app's pyqtgraph options (white ground, no antialiasing)
from explorer.core.analytic import GaussianDenoiser  # noqa: E402
from explorer.core.config import RunConfig  # noqa: E402
from explorer.ui.deferred import Deferred  # noqa: E402
from explorer.ui.plot_items import CurveSample, Dots, GridAxis, MarkedCurve, fill_rects, line_rect  # noqa: E402


def pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)[:, : image.width()].copy()


def grab(widget, qtbot) -> np.ndarray:
    widget.resize(240, 170)
    widget.show()
    qtbot.waitExposed(widget)
    return pixels(widget.grab().toImage()).astype(int)


# --------------------------------------------------------------------------- the Deferred queue
def test_deferred_steps_run_in_order_one_slot_each_and_repeat_while_asked(qtbot):
    queue, log = Deferred(), []
    pieces = iter(range(3))
    queue.add(lambda: log.append("a"))
    queue.add(lambda: log.append(f"b{next(pieces, 'end')}") or log[-1] != "b2", repeat=True)
    queue.add(lambda: log.append("c"), key="c")
    queue.add(lambda: log.append("c again"), key="c")  # waiting already: not queued twice
    queue.add(lambda: log.append(True))  # a step's True is no request to run again without repeat
    assert log == [] and queue.pending()  # nothing runs inside the slot that queued it
    qtbot.waitUntil(lambda: not queue.pending(), timeout=5000)
    assert log == ["a", "b0", "b1", "b2", "c", True]


def test_a_step_queued_by_a_running_step_runs_next_and_a_failing_step_is_dropped(qtbot):
    queue, log = Deferred(), []

    def first() -> None:
        log.append("first")
        queue.add(lambda: log.append("spawned"))  # part of first's work: before "last"

    def broken() -> None:
        raise RuntimeError("boom")

    queue.add(first)
    queue.add(broken)
    queue.add(lambda: log.append("last"))
    with qtbot.capture_exceptions() as raised:
        queue.flush()
    assert log == ["first", "spawned", "last"] and not queue.pending()
    assert [str(e[1]) for e in raised] == ["boom"]  # reported as an exception out of a slot is


# --------------------------------------------------------------------------- axis lines as filled pixels
@pytest.mark.parametrize("dx, dy", [(0.0, 0.0), (0.3, 0.6), (0.5, 0.25), (0.75, 0.5)])
def test_filled_lines_cover_the_pixels_of_qt_lines(dx, dy):
    """line_rect + fill_rects put a translucent grid line on exactly the pixels (ends included)
    a cosmetic 1-px pen puts it, wherever the axis sits between device pixels."""
    pen = QPen(QColor(0, 0, 0, 51))
    pen.setCosmetic(True)
    lines = [(QPointF(4.5, 2.2), QPointF(4.5, 30.7)), (QPointF(9.0, 31.0), QPointF(9.0, 1.0)),
             (QPointF(1.3, 12.5), QPointF(35.6, 12.5)), (QPointF(30.0, 20.25), QPointF(2.0, 20.25))]
    drawn, filled = QImage(40, 40, QImage.Format.Format_ARGB32_Premultiplied), QImage(40, 40, QImage.Format.Format_ARGB32_Premultiplied)
    for image in (drawn, filled):
        image.fill(0)
    p = QPainter(drawn)
    p.translate(dx, dy)
    p.setPen(pen)
    for a, b in lines:
        p.drawLine(a, b)
    p.end()
    p = QPainter(filled)
    p.translate(dx, dy)
    fill_rects(p, [(line_rect(a, b), pen.color()) for a, b in lines])
    p.end()
    assert np.array_equal(pixels(drawn), pixels(filled))
    assert line_rect(QPointF(0, 0), QPointF(3, 4)) is None  # a slanted line is left to Qt


def test_grid_axis_draws_as_pyqtgraphs_axis(qtbot):
    """The same grid, ticks and labels (the order translucent lines are blended in may move a
    pixel by a few levels), drawn once into a cache rather than replayed at every repaint."""
    shots = []
    for axes in (None, {"left": GridAxis("left"), "bottom": GridAxis("bottom")}):
        widget = pg.PlotWidget(axisItems=axes)
        qtbot.addWidget(widget)
        widget.getPlotItem().showGrid(x=True, y=True, alpha=0.2)
        widget.getPlotItem().setLogMode(y=True)
        widget.getPlotItem().plot([0, 1, 2, 3], [80, 5, 0.3, 0.002])
        shots.append(grab(widget, qtbot))
    diff = np.abs(shots[0] - shots[1]).max(-1)
    assert diff.max() <= 8 and (diff > 0).mean() < 0.01


# --------------------------------------------------------------------------- light items, same pixels
def test_marked_curve_draws_as_plot_with_round_markers(qtbot):
    x, y = np.arange(12.0), np.geomspace(80, 0.002, 12)
    shots, items = [], []
    for light in (False, True):
        widget = pg.PlotWidget()
        qtbot.addWidget(widget)
        plot = widget.getPlotItem()
        plot.setLogMode(y=True)
        plot.addLegend(sampleType=CurveSample)
        if light:
            items.append(MarkedCurve(x, y, pg.mkPen("#d62728", width=1.6), "#d62728", 4, name="heun"))
            plot.addItem(items[-1])
        else:
            plot.plot(x, y, pen=pg.mkPen("#d62728", width=1.6), symbol="o", symbolSize=4, symbolBrush="#d62728",
                      symbolPen=None, name="heun")
        shots.append(grab(widget, qtbot))
    assert np.array_equal(shots[0], shots[1])
    curve = items[0]
    assert np.array_equal(curve.xData, x) and np.array_equal(curve.yData, y)  # the data given, not its log
    assert curve.dataBounds(1) == pytest.approx((np.log10(0.002), np.log10(80)))
    assert widget.getPlotItem().listDataItems() == [curve]


def test_dots_draw_as_a_scatter_item_of_one_style(qtbot):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=300), rng.normal(size=300)
    brush = pg.mkBrush(230, 120, 0, 110)
    shots = []
    for item in (pg.ScatterPlotItem(size=4, pen=None, brush=brush), Dots(4, brush)):
        widget = pg.PlotWidget()
        qtbot.addWidget(widget)
        widget.getPlotItem().addItem(item)
        item.setData(x, y)
        shots.append(grab(widget, qtbot))
        assert len(item.data) == 300
    assert np.array_equal(shots[0], shots[1])


# --------------------------------------------------------------------------- the views
def test_compare_panels_of_removed_columns_are_kept_for_new_ones(qtbot):
    from explorer.session.run import RunSession
    from explorer.ui.compare_view import CompareView
    from explorer.ui.session import Session

    view = CompareView(Session(RunSession(GaussianDenoiser((2,), std=0.5), "gaussian", RunConfig(steps=3, batch=4))))
    qtbot.addWidget(view)
    view.add_current()
    view.add_column(RunConfig(solver="euler", steps=4))
    second = view.panels[1]
    view.remove_column(1)
    assert len(view.panels) == 1 and second.isHidden()
    view.add_column(RunConfig(solver="heun", steps=5))
    assert view.panels[1] is second and not second.isHidden()
    assert "heun" in second.title.full_text()
    assert view.plots.sigma_plot.plot.getViewBox().viewRange()[1] == pytest.approx([-3, 2])  # a σ-like range before runs


def test_a_finished_run_shows_its_record_from_the_live_frame_then_ends(qtbot, tmp_path):
    """The run's end draws in short slots: the live view's last frame is the record's (drawn
    once), and runEnded comes after the record is shown and the slider is usable."""
    from explorer.ui.main_window import MainWindow
    from explorer.ui.settings import AppSettings, open_settings

    win = MainWindow(AppSettings(open_settings(str(tmp_path / "s.ini"))), denoiser_spec="ring", autorun=False)
    qtbot.addWidget(win)
    win.model.load(RunConfig(steps=3, batch=8))
    seen, live = [], []
    win.worker.frameReady.connect(live.append)
    win.runEnded.connect(lambda how: seen.append((how, win.run_view.record is win.record, win.run_view.slider.isEnabled())))
    with qtbot.waitSignal(win.runEnded, timeout=300_000):
        assert win.start_run()
    assert seen == [("finished", True, True)]
    assert win.record.frame(win.record.num_states - 1) is live[-1] is win.run_view.frame
    assert sys.getswitchinterval() <= 0.001  # the worker's thread shares the interpreter lock quickly


def test_freeze_heap_leaves_start_up_objects_out_of_collections():
    from explorer.ui.app import freeze_heap

    before = gc.get_freeze_count()
    try:
        freeze_heap()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
