"""Start the desktop app: ``diffusion-explorer`` with no subcommand.

``run_app(screenshot=FILE)`` opens the window, waits for the default run to finish,
saves a picture of the whole window and exits 0 (1 if the run failed or took longer
than ``SCREENSHOT_TIMEOUT_S``). A screenshot run reads the remembered settings like a
normal launch but does not write them back.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from explorer.ui.main_window import MainWindow
from explorer.ui.settings import AppSettings, open_settings

SCREENSHOT_TIMEOUT_S = 600
SETTLE_MS = 400  # let the last frame paint before grabbing


def application() -> QApplication:
    """The process's QApplication (created once)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setApplicationName("diffusion-explorer")
        app.setOrganizationName("diffusion-explorer")
    return app  # type: ignore[return-value]


def freeze_heap() -> None:
    """Collect the start-up garbage once, then leave every object alive out of later collections.

    Why: Python's full collections walked every object of torch, Qt and pyqtgraph, 50–120 ms
    each, holding the interpreter lock on whichever thread set them off, so the GUI thread
    stood still that long even when the worker thread had started them (measured in
    ``benchmarks/gui_latency.py``: a 128 ms paint that used 2 ms of CPU). Frozen, the
    modules, classes and the window's own items are no longer walked; what runs create is
    collected as before.
    """
    gc.collect()
    gc.freeze()


def run_app(screenshot: Optional[str] = None, settings_path: Optional[str] = None) -> int:
    """Show the main window; with ``screenshot``, save it after the first run and exit."""
    if screenshot is not None and Path(screenshot).suffix.lower() != ".png":
        raise ValueError(f"The screenshot must be a .png file, not {Path(screenshot).name!r}.")
    if screenshot is not None and not Path(screenshot).resolve().parent.is_dir():
        raise ValueError(f"Folder {str(Path(screenshot).resolve().parent)!r} does not exist.")
    app = application()
    window = MainWindow(AppSettings(open_settings(settings_path)), remember=screenshot is None)
    window.show()
    freeze_heap()  # before the first run starts (the window starts it from the event loop)
    if screenshot is None:
        return int(app.exec())
    outcome = {"code": 1}
    loop = QEventLoop()  # a loop of its own: quitting it leaves the application's state alone

    def grab() -> None:
        pixmap = window.grab()
        outcome["code"] = 0 if pixmap.save(str(screenshot), "PNG") else 1
        if outcome["code"]:
            print(f"diffusion-explorer: error: could not write {screenshot}", file=sys.stderr)
        loop.quit()

    def ended(how: str) -> None:
        if how != "finished":
            print(f"diffusion-explorer: error: the default run {how}: {window.banner.text()}", file=sys.stderr)
        QTimer.singleShot(SETTLE_MS, grab if how == "finished" else loop.quit)

    window.runEnded.connect(ended)
    if window.model.config is None:
        print(f"diffusion-explorer: error: the remembered configuration is invalid: {window.model.error}", file=sys.stderr)
        _close_quietly(app, window)
        return 1
    QTimer.singleShot(SCREENSHOT_TIMEOUT_S * 1000, loop.quit)
    loop.exec()
    _close_quietly(app, window)
    return outcome["code"]


def _close_quietly(app: QApplication, window: MainWindow) -> None:
    """Close the window after the loop ended without "last window closed" posting a quit
    that would end the next event loop of this process (tests run several)."""
    quit_on_close = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)
    try:
        window.close()
        window.deleteLater()
    finally:
        app.setQuitOnLastWindowClosed(quit_on_close)
