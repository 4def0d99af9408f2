"""The desktop app (PySide6 + pyqtgraph); nothing outside this package imports Qt."""
from explorer.ui.qt_compat import guard_singletons

guard_singletons()
