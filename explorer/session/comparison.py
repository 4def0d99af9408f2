"""The Compare tab's state without Qt: columns, finished runs, the reference, errors, frames, sweep.

Why a session object: the tab's views (columns table, column panels, overlay plots,
sweep panel) all read one state, and that state must be cheap to read on the GUI
thread. So every tensor-heavy result is computed **once**, on the worker thread, when
a run or the reference arrives (:meth:`ComparisonSession.prepare_column`,
:meth:`ComparisonSession.prepare_reference`): the column's errors against the
reference and a picture for every (step, view). The GUI thread then commits the
prepared result (a few dictionary updates) and the step slider only looks frames up
(:meth:`ComparisonSession.frame`); the counters :attr:`frames_built` and
:attr:`frame_lookups` say which happened.

Columns are edited through :class:`~explorer.core.compare.Comparison`'s own
add/set/remove, so its limits (at most 16 columns, valid seed and batch) arrive as
ValueErrors the tab shows. Every edit that makes results stale bumps
:attr:`generation`; a result prepared for an older generation is refused at commit.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from explorer.core.compare import (
    ColumnError, ColumnRun, Comparison, ComparisonResult, column_color, column_error, column_label, data_space,
    index_at_step, match_sigma, sigma_axis_values,
)
from explorer.core.config import RunConfig
from explorer.core.solvers.options import REFERENCE_RTOL
from explorer.core.sweep import SweepResult
from explorer.export.grids import difference_cells, difference_limit, points_extent
from explorer.export.images import grid_shape, tile, to_uint8
from explorer.export.steps import state_picture

MAX_TILES = 16  # samples drawn per column
MAX_PATHS = 32  # particle paths per column in the trajectories overlay
VIEWS = ("x0", "xt", "diff")
Extent = tuple[float, float, float, float]


@dataclass(frozen=True)
class Frame:
    """What one column panel draws for one (step, view): an RGB/grey mosaic, or 2-D points
    (with the reference's points in the difference view) and their extent."""

    step: int
    sigma: float
    image: Optional[np.ndarray] = None
    points: Optional[np.ndarray] = None
    reference: Optional[np.ndarray] = None
    extent: Optional[Extent] = None


@dataclass(frozen=True)
class OverlayPath:
    """A run's curve in the trajectories overlay, ready to draw: 2-D particle paths x/s of the
    first samples (one broken curve), or for images sample 0's centre pixel against σ."""

    points: bool
    x: np.ndarray
    y: np.ndarray
    connect: Optional[np.ndarray] = None


@dataclass
class PreparedColumn:
    """A column's run with its error and frames, made on the worker thread."""

    index: int
    generation: int
    run: ColumnRun
    frames: dict[tuple[int, str], Frame]
    error: Optional[ColumnError] = None
    sigmas: list[float] = field(default_factory=list)
    path: Optional[OverlayPath] = None


@dataclass
class PreparedReference:
    """The reference run, and every finished column's error and difference frames against it."""

    generation: int
    reference: ColumnRun
    limit: float
    columns: list[PreparedColumn]
    path: Optional[OverlayPath] = None


# --------------------------------------------------------------------------- frames (worker thread)
def image_mosaic(picture: torch.Tensor, data_range: tuple[float, float]) -> np.ndarray:
    """The first samples of ``[B, C, H, W]`` as one uint8 mosaic (fixed levels)."""
    frames = to_uint8(picture[:MAX_TILES], data_range)
    return tile(frames, grid_shape(len(frames))[1], pad=1)


def difference_mosaic(diff: torch.Tensor, limit: float) -> np.ndarray:
    """|difference| of the first samples, heat-coloured from 0 to ``limit``, as one mosaic."""
    frames = np.stack([np.asarray(c) for c in difference_cells(diff[:MAX_TILES], limit)])
    return tile(frames, grid_shape(len(frames))[1], pad=1)


def path_arrays(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[S, B, 2] → x, y, connect for one curve: particle by particle, broken between them."""
    s, b = paths.shape[0], paths.shape[1]
    per = np.ascontiguousarray(paths.transpose(1, 0, 2)).reshape(s * b, 2)
    connect = np.ones(s * b, dtype=np.int32)
    connect[s - 1 :: s] = 0
    finite = np.isfinite(per).all(1)
    per = np.where(finite[:, None], per, 0.0)
    connect &= finite.astype(np.int32)
    connect[:-1] &= finite[1:].astype(np.int32)
    return per[:, 0], per[:, 1], connect


def overlay_path(run: ColumnRun) -> OverlayPath:
    """The run's curve for the trajectories overlay (made off the GUI thread)."""
    tr = run.trajectory
    scale = tr.scale.to(torch.float64).reshape(-1, *([1] * (tr.x.ndim - 1)))
    if tuple(tr.x.shape[2:]) == (2,):
        ys = (tr.x[:, :MAX_PATHS].to(torch.float64) / scale).numpy()
        x, y, connect = path_arrays(ys)
        return OverlayPath(True, x, y, connect)
    flat = (tr.x[:, 0].to(torch.float64) / scale[:, 0]).reshape(tr.x.shape[0], -1)
    sig = tr.sigma.double().numpy()
    ok = sig > 0
    return OverlayPath(False, sig[ok], flat[:, _centre_index(tuple(tr.x.shape[2:]))].numpy()[ok])


def _centre_index(shape: tuple[int, ...]) -> int:
    if len(shape) == 3:
        return (shape[1] // 2) * shape[2] + shape[2] // 2
    return int(np.prod(shape)) // 2


def _reference_states(run: ColumnRun, reference: ColumnRun) -> list[Optional[int]]:
    """For each state of the column, the reference's state at the same σ (None without one)."""
    return [match_sigma(reference.trajectory.sigma, float(s)) for s in run.trajectory.sigma]


def column_frames(run: ColumnRun, data_range: tuple[float, float], views: Sequence[str] = ("x0", "xt")) -> dict[tuple[int, str], Frame]:
    """The x₀ and xₜ frame of every state of a column."""
    tr = run.trajectory
    points = tuple(tr.x.shape[2:]) == (2,)
    out: dict[tuple[int, str], Frame] = {}
    for i in range(tr.num_steps + 1):
        sigma = float(tr.sigma[i])
        for view in views:
            picture = state_picture(tr, i, view, data_range)
            if points:
                pts = picture.detach().double().cpu().numpy()
                out[(i, view)] = Frame(i, sigma, points=pts, extent=points_extent(picture))
            else:
                out[(i, view)] = Frame(i, sigma, image=image_mosaic(picture, data_range))
    return out


def difference_frames(run: ColumnRun, reference: ColumnRun, limit: float) -> dict[tuple[int, str], Frame]:
    """The difference frame of every state that has a reference state at its σ."""
    mine, ref = data_space(run.trajectory), data_space(reference.trajectory)
    points = tuple(mine.shape[2:]) == (2,)
    out: dict[tuple[int, str], Frame] = {}
    for i, j in enumerate(_reference_states(run, reference)):
        if j is None:
            continue
        sigma = float(run.trajectory.sigma[i])
        if points:
            here, there = mine[i], ref[j]
            out[(i, "diff")] = Frame(i, sigma, points=here.numpy(), reference=there.numpy(),
                                     extent=points_extent(here, there))
        else:
            out[(i, "diff")] = Frame(i, sigma, image=difference_mosaic(mine[i] - ref[j], limit))
    return out


def final_difference_limit(runs: Sequence[ColumnRun], reference: ColumnRun) -> float:
    """One colour level for every difference picture: the 99.5th percentile of the final states' |difference|."""
    ref = data_space(reference.trajectory)
    diffs = []
    for run in runs:
        j = match_sigma(reference.trajectory.sigma, float(run.trajectory.sigma[-1]))
        if j is not None:
            diffs.append(data_space(run.trajectory)[-1] - ref[j])
    return difference_limit(diffs) if diffs else 1.0


# --------------------------------------------------------------------------- the session
class ComparisonSession:
    """Columns over one model and one set of latents, with everything the views draw cached."""

    def __init__(self, model: str, shape: Sequence[int], data_range: tuple[float, float], seed: int = 0, batch: int = 8) -> None:
        self.model = model
        self.shape = tuple(int(s) for s in shape)
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.seed, self.batch = seed, batch
        self.reference_rtol = REFERENCE_RTOL
        self.columns: tuple[RunConfig, ...] = ()
        self.prepared: list[Optional[PreparedColumn]] = []
        self.reference: Optional[ColumnRun] = None
        self.reference_path: Optional[OverlayPath] = None
        self.limit = 1.0  # the difference pictures' colour level (set with the reference)
        self.sweep: Optional[SweepResult] = None
        self.generation = 0
        self.axis: list[float] = []
        self.frames_built = 0  # frames taken from the worker (each commit adds its frames)
        self.frame_lookups = 0  # frames looked up by the views

    # ------------------------------------------------------------------ reading
    @property
    def is_points(self) -> bool:
        return self.shape == (2,)

    @property
    def runs(self) -> list[Optional[ColumnRun]]:
        return [None if p is None else p.run for p in self.prepared]

    def paths(self) -> list[Optional[OverlayPath]]:
        return [None if p is None else p.path for p in self.prepared]

    def errors(self) -> list[Optional[ColumnError]]:
        return [None if p is None else p.error for p in self.prepared]

    def comparison(self) -> Optional[Comparison]:
        """The comparison as it stands (None without columns)."""
        if not self.columns:
            return None
        return Comparison(self.model, self.columns, seed=self.seed, batch=self.batch, reference_rtol=self.reference_rtol)

    def labels(self) -> list[str]:
        return [f"{k + 1}. " + column_label(c, r.trajectory if r else None) for k, (c, r) in enumerate(zip(self.columns, self.runs))]

    def colors(self) -> list[str]:
        return [column_color(k) for k in range(len(self.columns))]

    @property
    def complete(self) -> bool:
        return bool(self.columns) and all(p is not None for p in self.prepared)

    def result(self) -> Optional[ComparisonResult]:
        """The finished comparison (every column run), or None."""
        comparison = self.comparison()
        if comparison is None or not self.complete:
            return None
        return ComparisonResult(comparison, self.prepared[0].run.trajectory.noise, self.runs, self.reference)

    def max_steps(self) -> int:
        return max((p.run.trajectory.num_steps for p in self.prepared if p is not None), default=0)

    def slider_top(self, sync: str) -> int:
        """The step control's largest position: the longest run's steps, or the last stop of the σ axis."""
        return max(0, len(self.axis) - 1) if sync == "sigma" else self.max_steps()

    def sigma_at(self, pos: int) -> Optional[float]:
        return self.axis[min(pos, len(self.axis) - 1)] if self.axis else None

    def shown_indices(self, pos: int, sync: str) -> list[Optional[int]]:
        """The state each column shows for the step control's position (None for columns not run)."""
        sigma = self.sigma_at(pos) if sync == "sigma" else None
        out: list[Optional[int]] = []
        for p in self.prepared:
            if p is None:
                out.append(None)
            elif sync == "sigma":
                out.append(_nearest_in_log(p.sigmas, 0.0 if sigma is None else sigma))
            else:
                out.append(index_at_step(p.run.trajectory, pos))
        return out

    def frame(self, column: int, step: int, view: str) -> Optional[Frame]:
        """A cached frame (None when the column has not run, or has no such view yet)."""
        self.frame_lookups += 1
        p = self.prepared[column]
        return None if p is None else p.frames.get((step, view))

    def step_error(self, column: int, step: int) -> Optional[float]:
        p = self.prepared[column]
        if p is None or p.error is None or step >= len(p.error.step) or not math.isfinite(p.error.step[step]):
            return None
        return p.error.step[step]

    # ------------------------------------------------------------------ editing
    def _changed(self, keep: Sequence[Optional[PreparedColumn]]) -> None:
        self.generation += 1
        self.prepared = list(keep)
        self.reference = self.reference_path = None
        for k, p in enumerate(self.prepared):  # new objects: a worker may still hold the old ones
            if p is not None:
                frames = {key: f for key, f in p.frames.items() if key[1] != "diff"}
                run = dataclasses.replace(p.run, column=k)  # its colour follows its place
                self.prepared[k] = dataclasses.replace(p, index=k, generation=self.generation, run=run, frames=frames, error=None)
        self._update_axis()

    def add(self, config: RunConfig) -> None:
        """Add a column (its seed and batch become the comparison's); ValueError past the limit."""
        if not self.columns:
            self.seed, self.batch = config.seed, config.batch
        columns = (self.comparison().add(config) if self.columns else
                   Comparison(self.model, (config,), seed=self.seed, batch=self.batch)).columns
        self.columns = columns
        self._changed(self.prepared + [None])

    def set(self, index: int, config: RunConfig) -> None:
        self.columns = self.comparison().set(index, config).columns if self.columns else ()
        keep = list(self.prepared)
        keep[index] = None
        self._changed(keep)

    def remove(self, index: int) -> None:
        comparison = self.comparison()
        if comparison is None:
            raise ValueError("There are no columns to remove.")
        if len(self.columns) == 1:
            comparison._check_index(index)
            self.columns = ()
        else:
            self.columns = comparison.remove(index).columns
        keep = list(self.prepared)
        del keep[index]
        self._changed(keep)

    def set_columns(self, columns: Sequence[RunConfig], seed: int, batch: int, rtol: Optional[float] = None) -> None:
        """Replace every column (a loaded comparison file); the runs go."""
        self.seed, self.batch = seed, batch
        self.reference_rtol = self.reference_rtol if rtol is None else float(rtol)
        self.columns = Comparison(self.model, tuple(columns), seed=seed, batch=batch).columns if columns else ()
        self._changed([None] * len(self.columns))

    def set_latents(self, seed: int, batch: int) -> None:
        if (seed, batch) == (self.seed, self.batch):
            return
        self.set_columns(self.columns, seed, batch)

    def set_model(self, model: str, shape: Sequence[int], data_range: tuple[float, float]) -> None:
        """A new denoiser: the columns stay, the old model's runs, reference and sweep go."""
        self.model, self.shape = model, tuple(int(s) for s in shape)
        self.data_range = (float(data_range[0]), float(data_range[1]))
        self.sweep = None
        self._changed([None] * len(self.columns))

    def set_reference_rtol(self, rtol: float) -> None:
        """The reference's tolerance; a reference run at another one is dropped."""
        if not (isinstance(rtol, float) and 0 < rtol < 1e-2):
            raise ValueError(f"The reference tolerance must lie in (0, 0.01) (got {rtol!r}).")
        if rtol != self.reference_rtol:
            self.reference_rtol = rtol
            self._changed(self.prepared)

    def set_sweep(self, sweep: Optional[SweepResult]) -> None:
        self.sweep = sweep

    # ------------------------------------------------------------------ results (prepare on the worker, commit on the GUI thread)
    def prepare_column(self, index: int, run: ColumnRun, generation: int,
                       reference: Optional[ColumnRun] = None, limit: float = 1.0) -> PreparedColumn:
        """Everything the views need of a finished column (tensor work: call off the GUI thread)."""
        frames = column_frames(run, self.data_range)
        error = None
        if reference is not None:
            frames.update(difference_frames(run, reference, limit))
            error = column_error(run.trajectory, reference.trajectory)
        return PreparedColumn(index, generation, run, frames, error, [float(s) for s in run.trajectory.sigma], overlay_path(run))

    def prepare_reference(self, reference: ColumnRun, columns: Sequence[Optional[PreparedColumn]], generation: int) -> PreparedReference:
        """Errors and difference frames of the finished columns against a new reference (off the GUI thread)."""
        done = [p for p in columns if p is not None]
        limit = final_difference_limit([p.run for p in done], reference)
        updated = []
        for p in done:
            frames = dict(p.frames)
            frames.update(difference_frames(p.run, reference, limit))
            updated.append(PreparedColumn(p.index, generation, p.run, frames,
                                          column_error(p.run.trajectory, reference.trajectory), p.sigmas, p.path))
        return PreparedReference(generation, reference, limit, updated, overlay_path(reference))

    def commit(self, prepared: PreparedColumn | PreparedReference) -> bool:
        """Take a prepared result (cheap); False when edits since made it stale."""
        if prepared.generation != self.generation:
            return False
        if isinstance(prepared, PreparedReference):
            self.reference, self.limit, self.reference_path = prepared.reference, prepared.limit, prepared.path
            for p in prepared.columns:
                self._store(p)
        else:
            self._store(prepared)
        self._update_axis()
        return True

    def _store(self, p: PreparedColumn) -> None:
        if not 0 <= p.index < len(self.prepared) or p.run.config != self.columns[p.index]:
            return
        self.frames_built += len(p.frames)
        self.prepared[p.index] = p

    def _update_axis(self) -> None:
        self.axis = sigma_axis_values([s for p in self.prepared if p is not None for s in p.sigmas])


def _nearest_in_log(sigmas: Sequence[float], sigma: float) -> int:
    """As :func:`explorer.core.compare.index_at_sigma`, on plain floats (no tensor work)."""
    if sigma <= 0:
        zeros = [i for i, s in enumerate(sigmas) if s == 0]
        return zeros[-1] if zeros else len(sigmas) - 1
    target, floor = math.log(sigma), sigma * 1e-12
    dists = [abs(math.log(max(s, floor)) - target) for s in sigmas]
    return dists.index(min(dists))

