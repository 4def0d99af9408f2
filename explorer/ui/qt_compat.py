"""A guard against a reference-counting bug in PySide6 6.12 on Python < 3.12.

PySide6 6.12.0 drops one reference to ``None`` on nearly every call that returns
nothing (``QLabel.setText``, ``processEvents``, every pyqtgraph repaint …). Python 3.12+
makes ``None`` immortal, so there it is harmless; on 3.11 ``None``'s count reaches zero
after some hundred thousand calls and the interpreter aborts ("none_dealloc", also
seen as "bool_dealloc"), in a long session or at exit. 6.11.3 does not have the bug.

The guard does what 3.12 does: it gives ``None``, ``True`` and ``False`` a reference
count so large that no session can use it up. It runs only for affected PySide6
versions on Python < 3.12; pinning PySide6 below 6.12 makes it unnecessary.
"""
from __future__ import annotations

import ctypes
import sys

AFFECTED_PREFIX = "6.12."
RESERVE = 1 << 40  # references added; at a million calls a second, 12 days of use


def needs_guard(pyside_version: str, python: tuple[int, int] = sys.version_info[:2]) -> bool:
    return python < (3, 12) and pyside_version.startswith(AFFECTED_PREFIX)


def guard_singletons() -> bool:
    """Apply the guard once if this PySide6 needs it; True when applied (now or before)."""
    try:
        import PySide6
    except ImportError:  # no Qt: importing the app's modules will say so
        return False

    if not needs_guard(PySide6.__version__):
        return False
    if getattr(sys, "_explorer_singleton_guard", False):
        return True
    for obj in (None, True, False):
        # CPython's object header starts with the reference count (Py_ssize_t).
        ctypes.c_ssize_t.from_address(id(obj)).value += RESERVE
    sys._explorer_singleton_guard = True  # type: ignore[attr-defined]
    return True
