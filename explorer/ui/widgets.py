"""Small widgets shared by the panel and the views.

:class:`DataCombo` keeps each item's value in a Python list instead of Qt's item data:
PySide6 6.12 loses a reference to ``None`` every time ``itemData``/``currentData``
returns an empty value, which after enough calls crashes the interpreter (it showed
as ``none_dealloc``/``bool_dealloc`` at exit). Indices are the only thing Qt holds.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QWidget

_SEPARATOR = object()


class DataCombo(QComboBox):
    """A combo box whose items carry Python values (any, including None)."""

    def __init__(self, items: Iterable[tuple[str, Any]] = (), parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._values: list[Any] = []
        for text, value in items:
            self.add(text, value)

    def add(self, text: str, value: Any, tooltip: str = "") -> None:
        self.insert(self.count(), text, value, tooltip)

    def insert(self, index: int, text: str, value: Any, tooltip: str = "") -> None:
        self.insertItem(index, text)
        self._values.insert(index, value)
        if tooltip:
            self.setItemData(index, tooltip, Qt.ToolTipRole)  # a string crosses into Qt as text: safe

    def add_separator(self) -> None:
        self.insertSeparator(self.count())
        self._values.insert(self.count() - 1, _SEPARATOR)

    def clear_items(self) -> None:
        self.clear()
        self._values.clear()

    def value_at(self, index: int) -> Any:
        """The value of item ``index`` (None for separators and bad indices)."""
        if 0 <= index < len(self._values) and self._values[index] is not _SEPARATOR:
            return self._values[index]
        return None

    def value(self) -> Any:
        return self.value_at(self.currentIndex())

    def find(self, value: Any) -> int:
        """Index of the first item whose value equals ``value`` (and has its type), or −1."""
        for index, item in enumerate(self._values):
            if item is not _SEPARATOR and item == value and type(item) is type(value):
                return index
        return -1

    def select(self, value: Any) -> bool:
        """Make the item with this value current; False when there is none."""
        index = self.find(value)
        if index >= 0:
            self.setCurrentIndex(index)
        return index >= 0


class WheelGuard(QObject):
    """An application-wide event filter: a mouse wheel over a spin box or combo box that
    does not have the keyboard focus does nothing (scrolling past a panel must not change ρ)."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Wheel and isinstance(obj, (QAbstractSpinBox, QComboBox)) and not obj.hasFocus():
            event.ignore()
            return True
        return False


_GUARD: Optional[WheelGuard] = None


def guard_wheel(app: QObject) -> WheelGuard:
    """Install the :class:`WheelGuard` on ``app`` once; the guard is returned."""
    global _GUARD
    if _GUARD is None:
        _GUARD = WheelGuard()
        app.installEventFilter(_GUARD)
    return _GUARD
