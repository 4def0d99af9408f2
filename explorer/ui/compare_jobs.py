"""The Compare tab's background jobs: each one knows its events, what it keeps, and how it ends.

A job's :meth:`Job.events` and :meth:`Job.observe` run on the worker thread; observe
prepares each finished run (errors, frames) there and hands it to the model, so the
GUI thread only commits. :meth:`Job.done` runs on the GUI thread with
:meth:`Job.finish`'s result and returns the sentence the tab shows; a cancelled or
failed job keeps whatever it already delivered.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from explorer.core.compare import (
    ColumnRun, Comparison, CompareProgress, comparison_events, interleaved_events, reference_events,
)
from explorer.core.sampling import resolve_device
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.sweep import SweepProgress, sweep_events
from explorer.export.options import ExportOptions
from explorer.session.comparison import PreparedColumn
from explorer.ui.compare_model import ComparisonModel


class Job:
    """A background job of the Compare tab (see the module docstring)."""

    name = "job"

    def __init__(self, model: ComparisonModel, what: str) -> None:
        self.model, self.what = model, what

    def events(self) -> Iterator[Any]:
        raise NotImplementedError

    def observe(self, item: Any) -> None:
        """Called on the worker thread with every event."""

    def finish(self) -> Any:
        """Called on the worker thread after the last event; its value goes to :meth:`done`."""
        return None

    def done(self, result: Any) -> str:
        """Called on the GUI thread when the job completed; the sentence to show."""
        return ""

    def progress_text(self, item: Any) -> str:
        """A short line for the progress bar, made on the worker thread."""
        return str(item) if isinstance(item, str) else ""


class ColumnsJob(Job):
    """Run some or all columns from the shared latents; each finished column is prepared and shown at once."""

    name = "columns"

    def __init__(self, model: ComparisonModel, denoiser: Denoiser, comparison: Comparison,
                 columns: Optional[Sequence[int]], what: str) -> None:
        super().__init__(model, what)
        s = model.session
        self.denoiser, self.comparison, self.columns = denoiser, comparison, columns
        self.generation, self.reference, self.limit = s.generation, s.reference, s.limit
        self.delivered = 0

    def events(self) -> Iterator[CompareProgress]:
        """On a GPU the columns of one device and dtype step in turn; on the CPU they run one after another."""
        if any(resolve_device(c.device).type == "cuda" for c in self.comparison.columns):
            return interleaved_events(self.denoiser, self.comparison, True, self.columns)
        return comparison_events(self.denoiser, self.comparison, False, True, self.columns)

    def observe(self, item: CompareProgress) -> None:
        if item.run is not None:
            prepared = self.model.session.prepare_column(item.column, item.run, self.generation, self.reference, self.limit)
            self.model.deliver(prepared)
            self.delivered += 1

    def progress_text(self, item: Any) -> str:
        if not isinstance(item, CompareProgress) or item.event is None:
            return ""
        ev = item.event
        total = f"/{ev.total_steps}" if ev.total_steps else ""
        return f"column {item.column + 1}/{item.total_columns}: step {ev.index}{total}, NFE {ev.nfe}, σ={ev.sigma:.3g}"

    def done(self, result: Any) -> str:
        return ""


class ReferenceJob(Job):
    """The RK45 reference through every column's σ's; then every finished column's errors and difference frames."""

    name = "reference"

    def __init__(self, model: ComparisonModel, denoiser: Denoiser, comparison: Comparison,
                 visited: Sequence[float], what: str) -> None:
        super().__init__(model, what)
        s = model.session
        self.denoiser, self.comparison, self.visited = denoiser, comparison, list(visited)
        self.generation = s.generation
        self.columns: list[Optional[PreparedColumn]] = list(s.prepared)
        self.started = 0.0

    def events(self) -> Iterator[CompareProgress]:
        self.started = time.perf_counter()
        return reference_events(self.denoiser, self.comparison, None, self.visited)

    def observe(self, item: CompareProgress) -> None:
        if item.run is not None:
            self.model.deliver(self.model.session.prepare_reference(item.run, self.columns, self.generation))

    def progress_text(self, item: Any) -> str:
        """σ reached, NFE so far and an ETA from the share of the reference's grid done."""
        if not isinstance(item, CompareProgress) or item.event is None:
            return ""
        ev = item.event
        elapsed = time.perf_counter() - self.started
        eta = ""
        if ev.total_steps and ev.index > 0:
            left = elapsed * (ev.total_steps - ev.index) / ev.index
            eta = f", about {left:.0f} s left"
        total = f"/{ev.total_steps}" if ev.total_steps else ""
        return f"reference: σ {ev.sigma:.3g} reached, grid point {ev.index}{total}, NFE {ev.nfe}, {elapsed:.0f} s{eta}"


class SweepJob(Job):
    """Error against NFE for some solvers."""

    name = "sweep"

    def __init__(self, model: ComparisonModel, denoiser: Denoiser, base: RunConfig, solvers: Sequence[str],
                 budgets: Sequence[int], what: str) -> None:
        super().__init__(model, what)
        self.denoiser, self.base, self.solvers, self.budgets = denoiser, base, list(solvers), list(budgets)
        self.result: Any = None

    def events(self) -> Iterator[SweepProgress]:
        return sweep_events(self.denoiser, self.base, self.solvers, self.budgets)

    def observe(self, item: SweepProgress) -> None:
        if item.result is not None:
            self.result = item.result

    def finish(self) -> Any:
        return self.result

    def progress_text(self, item: Any) -> str:
        if not isinstance(item, SweepProgress):
            return ""
        point = f": {item.point.solver} NFE {item.point.nfe}" if item.point else f": {item.message}"
        return f"sweep run {item.done}/{item.total}{point}"

    def done(self, result: Any) -> str:
        if result is None:
            return "The sweep gave no result."
        self.model.set_sweep(result)
        orders = ", ".join(f"{s} {o:.2f}" for s, o in result.orders().items() if math.isfinite(o))
        return f"Sweep done against the {result.reference_kind}; fitted orders: {orders}."


class ExportJob(Job):
    """Every export of a finished comparison into a folder, as ``diffusion-explorer compare`` writes them."""

    name = "export"

    def __init__(self, model: ComparisonModel, folder: str | Path, options: ExportOptions) -> None:
        super().__init__(model, f"Exporting to {folder}…")
        self.folder, self.options = folder, options
        self.result = model.session.result()
        self.data_range = model.session.data_range
        self.text = ""

    def events(self) -> Iterator[str]:
        from explorer.export.comparison import export_comparison

        report = export_comparison(self.result, self.folder, self.data_range, self.options)
        self.text = f"Wrote {len(report.paths)} files to {self.folder}. {' '.join(report.notes)}".strip()
        yield self.text

    def finish(self) -> Any:
        return self.text

    def done(self, result: Any) -> str:
        return str(result)


def adaptive_visited(runs: Sequence[Optional[ColumnRun]]) -> list[float]:
    """The σ's adaptive columns chose (the reference must pass through them too)."""
    from explorer.core.compare import adaptive_sigmas

    return [s for r in runs if r is not None for s in adaptive_sigmas(r)]
