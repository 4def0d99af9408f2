"""The app survives a PySide6 build that leaks references to None (6.12 on Python 3.11)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from explorer.ui.qt_compat import needs_guard  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_only_affected_versions_are_guarded():
    assert needs_guard("6.12.0", (3, 11))
    assert not needs_guard("6.12.0", (3, 12))
    assert not needs_guard("6.11.3", (3, 11))


def test_many_qt_calls_then_a_clean_exit():
    script = textwrap.dedent(
        """
        import os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        import explorer.ui  # applies the guard where needed
        from PySide6.QtWidgets import QApplication, QLabel
        app = QApplication([])
        label = QLabel()
        for i in range(300_000):  # more than None's own count on an affected build
            label.setText("x")
        print("survived")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout
