"""The Compare tab's columns table: one row per column, solver and steps editable in place.

It observes the comparison model (rows follow ``columnsChanged`` and ``resultsChanged``)
and asks the model for every edit; a refused edit comes back as the model's ``problem``
and the table is redrawn from the session, so the impossible value is undone.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QHeaderView, QSpinBox, QTableWidget, QTableWidgetItem, QWidget

from explorer.core.compare import ColumnRun
from explorer.core.config import RunConfig
from explorer.core.plan import predicted_nfe
from explorer.core.solvers import SOLVERS
from explorer.ui.widgets import guard_wheel
from explorer.ui.compare_model import ComparisonModel

TABLE_HEAD = ["", "solver", "steps", "NFE", "time s", "RMSE vs ref"]
ROW_HEIGHT = 26  # fits a combo box and a spin box; Qt's default 30 px left the pictures less room


class ColumnsTable(QTableWidget):
    """The columns as rows: colour swatch, solver, steps, NFE, time, final RMSE."""

    def __init__(self, model: ComparisonModel, sigma_range: Callable[[], tuple[float, float]], parent: Optional[QWidget] = None) -> None:
        super().__init__(0, len(TABLE_HEAD), parent)
        self.model = model
        self.sigma_range = sigma_range  # () -> (σ_min, σ_max) of the current denoiser
        self.setHorizontalHeaderLabels(TABLE_HEAD)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        self.setMinimumHeight(ROW_HEIGHT * 2 + 4)  # the header and one row, however small the window
        self.setMaximumHeight(ROW_HEIGHT * 5 + 6)  # the header and four rows; more rows scroll
        self._editing: list[tuple[RunConfig, int]] = []  # (configuration, steps) each row's editors show
        model.columnsChanged.connect(self.fill)
        model.resultsChanged.connect(self.fill)
        model.problem.connect(lambda *_: self.fill(again=True))  # the refused value in an editor is undone
        self.fill()

    def selected(self) -> Optional[int]:
        rows = self.selectionModel().selectedRows() if self.selectionModel() else []
        return rows[0].row() if rows else None

    def fill(self, again: bool = False) -> None:
        """Redraw the rows from the session. A row's editors are made again only when what they
        show changed (or ``again``): making two editors a row (a combo box of every solver) for
        every row on every result took up to 20 ms of the GUI thread per finished column."""
        s = self.model.session
        if again:
            self._editing = []
        self.setRowCount(len(s.columns))
        self._editing = self._editing[: len(s.columns)]
        errors, colors = s.errors(), s.colors()
        for k, (config, run) in enumerate(zip(s.columns, s.runs)):
            self._swatch(k, colors[k])
            shown = (config, _steps_shown(config, run))
            if k >= len(self._editing) or self._editing[k] != shown or self.cellWidget(k, 1) is None:
                self.setCellWidget(k, 1, self._solver_editor(k, config))
                self.setCellWidget(k, 2, self._steps_editor(k, config, run))
                self._editing[k:k + 1] = [shown]
            cells = [self._nfe_text(config, run), f"{run.seconds:.3f}" if run and math.isfinite(run.seconds) else "",
                     f"{errors[k].final:.4e}" if errors[k] is not None else ""]
            for q, text in enumerate(cells, start=3):
                self._number(k, q, text)

    def _swatch(self, k: int, color: str) -> None:
        """Row k's number on its column's colour (made again only when the colour changed)."""
        item = self.item(k, 0)
        if item is None or item.text() != str(k + 1) or item.background().color() != pg.mkColor(color):
            item = QTableWidgetItem(str(k + 1))
            item.setBackground(pg.mkColor(color))
            item.setForeground(pg.mkColor("w"))
            self.setItem(k, 0, item)

    def _number(self, k: int, q: int, text: str) -> None:
        """A right-aligned number cell, set only when its text changed (every result refills the
        table: a new item per cell per result was most of a finished column's table time)."""
        item = self.item(k, q)
        if item is None:
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            self.setItem(k, q, item)
        elif item.text() != text:
            item.setText(text)

    def _nfe_text(self, config: RunConfig, run: Optional[ColumnRun]) -> str:
        if run is not None:
            return str(run.trajectory.nfe)
        try:
            nfe = predicted_nfe(config, self.sigma_range())
        except ValueError:
            nfe = None
        return "—" if nfe is None else str(nfe)

    def _edit(self, index: int, **changes: Any) -> None:
        try:
            config = self.model.session.columns[index].replace(**changes)
        except ValueError as err:
            self.model.problem.emit(str(err))
            return
        if self.model.set(index, config):
            self.selectRow(index)

    def _solver_editor(self, k: int, config: RunConfig) -> QComboBox:
        box = QComboBox()
        box.addItems([n for n in SOLVERS if n != "reference"])
        box.setCurrentText(config.solver)
        box.setFocusPolicy(Qt.StrongFocus)
        box.currentTextChanged.connect(lambda name, k=k: self._edit(k, solver=name))
        guard_wheel(box)
        return box

    def _steps_editor(self, k: int, config: RunConfig, run: Optional[ColumnRun]) -> QSpinBox:
        box = QSpinBox()
        box.setRange(1, 10000)
        box.setKeyboardTracking(False)
        box.setFocusPolicy(Qt.StrongFocus)
        box.setValue(_steps_shown(config, run))
        box.setToolTip("steps (an NFE budget in the column is replaced by this step count)")
        box.valueChanged.connect(lambda n, k=k: self._edit(k, steps=int(n), nfe=None, **NO_GRID))
        guard_wheel(box)
        return box


NO_GRID = dict(sigmas=None, timesteps=None, orders=None, init_sigma=None, schedule_label=None)  # a step count replaces a σ grid


def _steps_shown(config: RunConfig, run: Optional[ColumnRun]) -> int:
    """The steps editor's value: the column's steps, or those its run took (an NFE budget, a σ grid)."""
    return config.steps or (run.trajectory.num_steps if run else 18)
