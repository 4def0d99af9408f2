"""The Compare tab's parameter grid: every solver × step count as columns at once (as in
A1111's X/Y plot), from the current configuration and the same latents."""
from __future__ import annotations

from typing import Optional, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget,
)

from explorer.core.config import RunConfig
from explorer.core.solvers import SOLVERS
from explorer.core.sweep import parse_budgets


def grid_columns(base: RunConfig, solvers: Sequence[str], steps: Sequence[int], room: int) -> list[RunConfig]:
    """``base`` with each solver at each step count (solver-major); ValueError when the grid is
    empty, invalid for a solver, or larger than the ``room`` left in the comparison."""
    if not solvers or not steps:
        raise ValueError("Pick at least one solver and one step count for the grid.")
    count = len(solvers) * len(steps)
    if count > room:
        raise ValueError(f"The grid has {count} columns but the comparison has room for {room} more "
                         f"(at most 16 in all).")
    return [base.replace(solver=s, steps=int(n), nfe=None) for s in solvers for n in steps]


class GridDialog(QDialog):
    """Pick solvers (checked) and step counts (comma-separated)."""

    def __init__(self, parent: Optional[QWidget] = None, checked: Sequence[str] = ("euler", "heun")) -> None:
        super().__init__(parent)
        self.setWindowTitle("Parameter grid")
        self.solvers = QListWidget()
        for name, info in SOLVERS.items():
            if info.adaptive or name == "reference":
                continue
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if name in checked else Qt.Unchecked)
            self.solvers.addItem(item)
        self.steps = QLineEdit("5,10,18")
        self.steps.setToolTip("step counts, comma-separated")
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("solvers (rows of the grid)"))
        layout.addWidget(self.solvers, 1)
        layout.addWidget(QLabel("step counts"))
        layout.addWidget(self.steps)
        layout.addWidget(buttons)

    def choice(self) -> tuple[list[str], list[int]]:
        items = [self.solvers.item(i) for i in range(self.solvers.count())]
        solvers = [item.text() for item in items if item.checkState() == Qt.Checked]
        try:
            steps = list(parse_budgets(self.steps.text()))
        except ValueError:
            steps = []
        return solvers, steps
