"""Tables as CSV: a comparison's errors and a sweep's error against NFE.

Run times are left out of the files on purpose: every other number reproduces
exactly from the comparison file, and a time never does (the CLI prints it).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

from explorer.export.files import save_text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def csv_text(header: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(h)) for h in header])
    return buf.getvalue()


def save_error_table(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """column, solver, steps, nfe, error (RMSE against the reference; empty without one)."""
    numbered = [dict(r, column=i + 1) for i, r in enumerate(rows)]
    return save_text(csv_text(["column", "solver", "steps", "nfe", "error"], numbered), path)


def save_sweep_table(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """solver, budget, steps, nfe, error, order (the solver's fitted order, repeated per row)."""
    return save_text(csv_text(["solver", "budget", "steps", "nfe", "error", "order"], rows), path)
