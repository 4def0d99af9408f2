"""The Compare tab's parameter grid: every solver × step count (× ρ) as columns at once (as in
A1111's X/Y/Z plot), from the current configuration and the same latents."""
from __future__ import annotations

import math
from typing import Optional, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QLabel, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout, QWidget,
)

from explorer.core.config import RunConfig
from explorer.core.solvers import SOLVERS
from explorer.core.sweep import parse_budgets


def grid_columns(base: RunConfig, solvers: Sequence[str], steps: Sequence[int], room: int,
                 rhos: Sequence[float] = ()) -> list[RunConfig]:
    """``base`` with each solver at each step count and each ρ (solver-major, then steps; no ρ's:
    the base's); ValueError when the grid is empty, invalid, or larger than the ``room`` left."""
    if not solvers or not steps:
        raise ValueError("Pick at least one solver and one step count for the grid.")
    if rhos and (base.disc != "edm" or base.sigmas is not None):
        raise ValueError(f"ρ shapes only the edm time steps (the current ones are {base.disc if base.sigmas is None else 'a σ grid'}); "
                         "leave the ρ values empty or choose Time steps: edm.")
    count = len(solvers) * len(steps) * max(1, len(rhos))
    if count > room:
        raise ValueError(f"The grid has {count} columns but the comparison has room for {room} more "
                         f"(at most 16 in all).")
    return [base.replace(solver=s, steps=int(n), nfe=None, rho=float(r))
            for s in solvers for n in steps for r in (rhos or (base.rho,))]


def parse_rhos(text: str) -> list[float]:
    """'3, 5, 7' → [3.0, 5.0, 7.0]; empty → [] (the current ρ); ValueError naming the bad entry."""
    values = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"ρ values must be numbers separated by commas (got {item!r}).") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"ρ must be positive and finite (got {item}).")
        values.append(value)
    return sorted(set(values))


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
        self.rhos = QLineEdit()
        self.rhos.setPlaceholderText("empty: the current ρ")
        self.rhos.setToolTip("ρ values of the edm time steps, comma-separated (a third grid axis)")
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("solvers (rows of the grid)"))
        layout.addWidget(self.solvers, 1)
        layout.addWidget(QLabel("step counts"))
        layout.addWidget(self.steps)
        layout.addWidget(QLabel("ρ values (optional)"))
        layout.addWidget(self.rhos)
        layout.addWidget(buttons)

    def choice(self) -> tuple[list[str], list[int], str]:
        """The checked solvers, the step counts (empty when unreadable) and the ρ text as typed."""
        items = [self.solvers.item(i) for i in range(self.solvers.count())]
        solvers = [item.text() for item in items if item.checkState() == Qt.Checked]
        try:
            steps = list(parse_budgets(self.steps.text()))
        except ValueError:
            steps = []
        return solvers, steps, self.rhos.text()
