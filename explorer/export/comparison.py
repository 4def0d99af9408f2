"""Every export of a comparison (and of a single run) into one folder.

The GUI's Export button and ``diffusion-explorer compare`` both call
:func:`export_comparison`, so the files are the same whichever wrote them. Names are
fixed (``01-heun-18steps`` …) and the contents depend only on the comparison file,
so a rerun from ``comparison.json`` rewrites identical files.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from explorer.core.compare import ColumnRun, ComparisonResult, difference
from explorer.core.trajectory import Trajectory
from explorer.export import figures, steps
from explorer.export.bundle import save_bundle
from explorer.export.files import new_output_dir, save_image, save_safetensors, undo_on_error
from explorer.export.grids import comparison_grid, difference_grid, sample_grid
from explorer.export.options import ExportOptions, write_document
from explorer.export.tables import save_error_table

Log = Optional[Callable[[str], None]]


@dataclass
class ExportReport:
    """The files written, and why anything asked for was not (e.g. no ffmpeg for MP4)."""

    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def slug(index: int, run: ColumnRun) -> str:
    """'01-heun-18steps': the file stem of column ``index``."""
    return f"{index + 1:02d}-{run.config.solver}-{run.trajectory.num_steps}steps"


def column_title(index: int, run: ColumnRun) -> str:
    """The label of a column in grids: solver, steps and NFE."""
    return f"{index + 1}. {run.config.solver}\n{run.trajectory.num_steps} steps · NFE {run.trajectory.nfe}"


def save_trajectory(traj: Trajectory, path: Path) -> Path:
    """A run's trajectory file (SPEC §6), with a sorted header so reruns give identical bytes."""
    if Path(path).suffix.lower() != ".safetensors":
        raise ValueError(f"Exported trajectories end in .safetensors, not {Path(path).name!r}.")
    return save_safetensors(traj.tensors(), traj.metadata(), path)


def export_run(
    trajectory: Trajectory, out: str | Path, data_range: tuple[float, float], options: ExportOptions = ExportOptions(),
    stem: str = "run", color: str = "#1F3C8C", log: Log = None,
) -> ExportReport:
    """Sample grid, film strip, animation and σ/trajectory plots of one run (all or nothing)."""
    folder, created = new_output_dir(out)
    report = ExportReport()
    with undo_on_error(report.paths, created):
        _export_run(trajectory, folder, data_range, options, stem, color, log, report)
    return report


def _export_run(trajectory: Trajectory, folder: Path, data_range: tuple[float, float], o: ExportOptions, stem: str,
                color: str, log: Log, report: ExportReport) -> None:
    say = log or (lambda _m: None)

    def add(path: Path) -> None:
        report.paths.append(path)
        say(f"wrote {path}")

    seed = trajectory.config.seed
    if o.sample_grid:
        add(save_image(sample_grid(trajectory.samples, data_range, o.grid_columns or None, o.pad, o.labels, seed, o.scale, o.downscale,
                                   o.max_pixels, trajectory.config.solver), folder / f"samples_{stem}.png"))
    if o.film_strip:
        add(save_image(steps.film_strip(trajectory, data_range, o.strip_every, o.strip_space, o.pad, o.labels, o.scale,
                                        o.max_rows or None, o.downscale, o.max_pixels), folder / f"filmstrip_{stem}.png"))
    if o.animation or o.mp4:
        frames = steps.run_frames(trajectory, data_range, o.animation_space, None, o.pad, o.labels, o.scale, color,
                                  o.downscale, o.max_pixels)
        _animations(frames, folder / f"animation_{stem}", o, report, add)
    if o.trajectories:
        add(save_trajectory(dataclasses.replace(trajectory, data_range=tuple(data_range)), folder / f"{stem}.safetensors"))
    if o.plots:
        run = ColumnRun(trajectory.config, trajectory, 0.0)
        _plots(folder, o, add, {"sigma": lambda: figures.sigma_figure([run], [stem]),
                                "trajectories": lambda: figures.trajectory_figure([run], [stem])})


def _animations(frames, base: Path, o: ExportOptions, report: ExportReport, add: Callable[[Path], None]) -> None:
    if o.animation:
        add(steps.save_gif(frames, base.with_suffix(".gif"), o.fps))
    if o.mp4:
        if steps.ffmpeg_path() is None:
            note = "MP4 skipped: ffmpeg is not on PATH."
            if note not in report.notes:
                report.notes.append(note)
        else:
            add(steps.save_mp4(frames, base.with_suffix(".mp4"), o.fps))


def _plots(folder: Path, o: ExportOptions, add: Callable[[Path], None], makers: dict) -> None:
    for name, make in makers.items():
        for fmt in o.plot_formats:
            add(figures.save_plot(make(), folder / f"{name}.{fmt}"))


def export_comparison(
    result: ComparisonResult, out: str | Path, data_range: tuple[float, float],
    options: ExportOptions = ExportOptions(), log: Log = None,
) -> ExportReport:
    """Write the comparison file, grids, film strips, animations, trajectories, error table and plots (all or nothing)."""
    if not result.complete:
        raise ValueError("Run every column before exporting the comparison.")
    folder, created = new_output_dir(out)
    report = ExportReport()
    with undo_on_error(report.paths, created):
        _export_comparison(result, folder, data_range, options, log, report)
    return report


def _export_comparison(result: ComparisonResult, folder: Path, data_range: tuple[float, float], o: ExportOptions,
                       log: Log, report: ExportReport) -> None:
    cmp = result.comparison
    say = log or (lambda _m: None)

    def add(path: Path) -> None:
        report.paths.append(path)
        say(f"wrote {path}")

    runs = result.finished()
    titles = [column_title(k, r) for k, r in enumerate(runs)]
    colors = [r.color for r in runs]
    samples = [r.trajectory.samples for r in runs]
    rows = o.max_rows or None
    add(write_document(cmp, o, folder / "comparison.json"))
    for k, run in enumerate(runs):
        sub = ExportOptions(**{**o.to_dict(), "trajectories": False, "plots": False})
        part = export_run(run.trajectory, folder, data_range, sub, slug(k, run), run.color, log)
        report.paths += part.paths
        report.notes += [n for n in part.notes if n not in report.notes]
    if o.comparison_grid:
        add(save_image(comparison_grid(samples, titles, data_range, colors, o.pad, o.labels, cmp.seed, o.scale,
                                       o.downscale, o.max_pixels, rows), folder / "comparison_grid.png"))
    ref = result.reference
    if o.difference_grid and ref is not None:
        diffs = [difference(r.trajectory, ref.trajectory) for r in runs]
        if any(d is None for d in diffs):
            report.notes.append("Difference grid skipped: a column ends at a σ the reference does not visit.")
        else:
            add(save_image(difference_grid(diffs, titles, samples, ref.trajectory.samples, colors, o.pad, o.labels,
                                           cmp.seed, o.scale, o.downscale, o.max_pixels, rows), folder / "difference_grid.png"))
    if o.animation or o.mp4:
        frames = steps.comparison_frames([r.trajectory for r in runs], titles, data_range, o.animation_space, colors,
                                         o.pad, o.labels, o.scale, rows or 8, o.downscale, o.max_pixels, o.animation_sync)
        _animations(frames, folder / "comparison", o, report, add)
    if o.trajectories:
        for k, run in enumerate(runs):
            add(save_trajectory(dataclasses.replace(run.trajectory, data_range=tuple(data_range)),
                                folder / f"{slug(k, run)}.safetensors"))
        if ref is not None:
            add(save_trajectory(dataclasses.replace(ref.trajectory, data_range=tuple(data_range)),
                                folder / "reference.safetensors"))
        add(save_bundle(result, folder / "comparison.safetensors", data_range))
    add(save_error_table(result.table(), folder / "errors.csv"))
    if o.plots:
        names = [t.replace("\n", " · ") for t in titles]
        makers = {
            "sigma": lambda: figures.sigma_figure(runs, names),
            "trajectories": lambda: figures.trajectory_figure(runs, names, ref),
        }
        if ref is not None:
            makers["errors"] = lambda: figures.error_figure(runs, names, result.errors())
        _plots(folder, o, add, makers)

