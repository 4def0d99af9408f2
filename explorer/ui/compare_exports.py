"""The Compare tab's export menu: everything to a folder, the comparison file, the sweep, loading.

Writing goes through :mod:`explorer.export.comparison` (on the worker, as an
:class:`~explorer.ui.compare_jobs.ExportJob`), exactly as ``diffusion-explorer compare``
writes it, so a comparison exported here and one run from its file give the same files.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PySide6.QtWidgets import QFileDialog, QMenu

from explorer.core.compare import Comparison
from explorer.export.options import ExportOptions, read_document, write_document
from explorer.ui.compare_jobs import ExportJob

if TYPE_CHECKING:
    from explorer.ui.compare_view import CompareView


class ExportMenu(QMenu):
    """The menu behind the tab's Export button; it reads the session and reports through the tab."""

    def __init__(self, view: "CompareView") -> None:
        super().__init__(view)
        self.view = view
        self.all_action = self.addAction("Everything to a folder…", self.export_all)
        self.config_action = self.addAction("Comparison file (JSON)…", self.export_config)
        self.sweep_action = self.addAction("Error-vs-NFE table and plot…", self.export_sweep)
        self.addSeparator()
        self.addAction("Load a comparison file…", self.load_config)
        self.addSeparator()
        self.downscale_action = self.addAction("Downscale grids too large for one image")
        self.downscale_action.setCheckable(True)
        self.xt_action = self.addAction("Film strips and animations show xₜ (else x₀)")
        self.xt_action.setCheckable(True)

    def update_actions(self) -> None:
        state = self.view.state
        self.all_action.setEnabled(state.complete)
        self.config_action.setEnabled(bool(state.columns))
        self.sweep_action.setEnabled(state.sweep is not None)

    def options(self) -> ExportOptions:
        space = "xt" if self.xt_action.isChecked() else "x0"
        return ExportOptions(downscale=self.downscale_action.isChecked(), strip_space=space, animation_space=space)

    def export_to(self, folder: str | Path) -> bool:
        """Every export of the comparison into ``folder`` (on the worker thread)."""
        if self.view.result() is None:
            self.view.say("Run every column before exporting.", error=True)
            return False
        return self.view.start(ExportJob(self.view.model, folder, self.options()))

    def export_all(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.view, "Export the comparison into a folder")
        if folder:
            self.export_to(folder)

    def export_config(self) -> None:
        comparison = self.view.comparison()
        if comparison is None:
            return
        path, _ = QFileDialog.getSaveFileName(self.view, "Save the comparison file", "comparison.json", "JSON (*.json)")
        if path:
            self._guard(lambda: self._write_config(comparison, path))

    def _write_config(self, comparison: Comparison, path: str) -> None:
        write_document(comparison, self.options(), path)
        self.view.say(f"Saved {path}; reproduce with: diffusion-explorer compare --config {path} --out DIR")

    def export_sweep(self) -> None:
        if self.view.sweep is None:
            return
        folder = QFileDialog.getExistingDirectory(self.view, "Save the error-vs-NFE table and plot into a folder")
        if folder:
            self._guard(lambda: self.save_sweep(folder))

    def save_sweep(self, folder: str | Path) -> list[Path]:
        """sweep.csv, sweep.png and sweep.svg (the same files as ``diffusion-explorer sweep``)."""
        from explorer.export.figures import save_plot, sweep_figure
        from explorer.export.files import output_dir
        from explorer.export.tables import save_sweep_table

        sweep, out = self.view.sweep, output_dir(folder)
        paths = [save_sweep_table(sweep.rows(), out / "sweep.csv")]
        title = f"{self.view.session.denoiser_spec}: error against NFE"
        for fmt in ("png", "svg"):
            paths.append(save_plot(sweep_figure(sweep, title), out / f"sweep.{fmt}"))
        self.view.say(f"Saved {', '.join(p.name for p in paths)} in {out}.")
        return paths

    def load_config(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.view, "Open a comparison file", "", "JSON (*.json)")
        if path:
            self._guard(lambda: self.load_document(path))

    def load_document(self, path: str | Path) -> None:
        """Take the columns, seed, batch and tolerance of a comparison file (its model must be the current one)."""
        comparison, _options = read_document(path)
        self.view.use_comparison(comparison)

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except ValueError as err:
            self.view.say(str(err), error=True)
