"""What the views draw, computed away from the GUI thread (no Qt here).

A :class:`RunRecord` watches a run's events (on the worker thread): it keeps each
state on the CPU, records the :class:`Trajectory`, and turns any step into a
:class:`StepFrame` — uint8 mosaics for image denoisers, small float arrays for 2-D
toys and pixel traces. The GUI thread only ever receives frames. After the run the
same record answers ``frame(i)`` for the step slider, and ``projection()`` gives the
PCA of every sample's path.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.events import StepEvent
from explorer.core.trajectory import Trajectory, TrajectoryRecorder
from explorer.export.images import grid_shape, tile, to_uint8

MAX_TILES = 64  # images drawn per grid; larger batches are recorded in full but shown in part
MAX_PARTICLES = 2048  # 2-D paths drawn
TRACE_SAMPLES = 16  # samples whose chosen pixels are traced (more is clutter, and slower to draw)
DENSITY_GRID = 128  # pixels per side of the 2-D density background
PAD = 1


def normalised(y: torch.Tensor, sigma: float, data_range: tuple[float, float]) -> torch.Tensor:
    """x/s shrunk towards the range's middle by √(1 + (σ/h)²), h the half range: the noisy state's
    spread then stays about the data's at every σ, so early steps are not saturated noise
    (the same picture the exported film strips draw for xₜ)."""
    lo, hi = data_range
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return mid + (y - mid) / math.sqrt(1 + (sigma / half) ** 2)


@dataclass(frozen=True)
class MosaicLayout:
    """Where each sample's tile sits in a grid mosaic, to turn a click into (sample, y, x)."""

    height: int
    width: int
    columns: int
    count: int
    pad: int = PAD

    def locate(self, px: float, py: float) -> Optional[tuple[int, int, int]]:
        """Mosaic pixel (px, py) → (sample, row, column) inside its tile, or None in the padding."""
        col, x = divmod(int(math.floor(px)) - self.pad, self.width + self.pad)
        row, y = divmod(int(math.floor(py)) - self.pad, self.height + self.pad)
        if px < self.pad or py < self.pad or x >= self.width or y >= self.height or col >= self.columns:
            return None
        sample = row * self.columns + col
        return (sample, y, x) if 0 <= sample < self.count else None


@dataclass(frozen=True)
class Density:
    """A 2-D density image with the data-space rectangle it covers (x, y, width, height)."""

    image: np.ndarray  # [H, W] float32, row-major, row 0 at the bottom (y = rect[1])
    rect: tuple[float, float, float, float]


@dataclass
class StepFrame:
    """Everything the views show for one step; numpy only, small."""

    index: int
    total: Optional[int]
    nfe: int
    t: float
    sigma: float
    scale: float
    order: Optional[int]
    elapsed: float
    steps_per_second: float
    sigmas: np.ndarray  # σ of states 0 … index
    denoised_image: Optional[np.ndarray] = None  # [H, W, C] uint8 mosaic (None at step 0)
    noisy_image: Optional[np.ndarray] = None
    layout: Optional[MosaicLayout] = None
    noisy_points: Optional[np.ndarray] = None  # [B, 2] x/s of this step (2-D toys)
    denoised_points: Optional[np.ndarray] = None
    density: Optional[Density] = None  # p(x; σ of this step), for the x_t view
    paths: Optional[np.ndarray] = None  # [index + 1, B, 2] x/s of states 0 … index
    eval_points: Optional[np.ndarray] = None  # [E, 2] stage evaluations up to this step
    eval_steps: Optional[np.ndarray] = None  # [E] the step each evaluation belongs to
    pixels: tuple[tuple[int, int], ...] = ()
    pixel_traces: Optional[np.ndarray] = None  # [index + 1, B, P] x/s at the chosen pixels
    eval_sigmas: Optional[np.ndarray] = None  # [E] σ of the stage evaluations
    eval_traces: Optional[np.ndarray] = None  # [E, B, P] pixel values at the evaluations


def default_pixels(shape: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Three pixels to trace before the user clicks any: centre and two off-centre."""
    if len(shape) != 3:
        return ()
    h, w = shape[1], shape[2]
    return ((h // 2, w // 2), (h // 4, w // 4), (3 * h // 4, w // 3))


def gmm_density(denoiser: Denoiser, sigma: float, rect: tuple[float, float, float, float], n: int = DENSITY_GRID) -> Optional[Density]:
    """log p(x; σ) of a 2-D Gaussian mixture on an n×n grid (None for other denoisers)."""
    means = getattr(denoiser, "means", None)
    variances = getattr(denoiser, "variances", None)
    log_w = getattr(denoiser, "log_weights", None)
    if means is None or variances is None or log_w is None or tuple(denoiser.shape) != (2,):
        return None
    x0, y0, w, h = rect
    xs = x0 + (np.arange(n) + 0.5) * w / n
    ys = y0 + (np.arange(n) + 0.5) * h / n
    gx, gy = np.meshgrid(xs, ys)  # row r is y = ys[r]
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    mu = means.detach().cpu().double().numpy()
    var = variances.detach().cpu().double().numpy() + sigma**2
    lw = log_w.detach().cpu().double().numpy()
    d2 = ((pts[:, None, :] - mu[None]) ** 2).sum(-1)
    logp = lw - np.log(2 * np.pi * var) - d2 / (2 * var)
    top = logp.max(1, keepdims=True)
    dens = np.exp(top[:, 0] + np.log(np.exp(logp - top).sum(1)))
    return Density(dens.reshape(n, n).astype(np.float32), rect)


def data_rect(denoiser: Denoiser, margin: float = 1.35) -> tuple[float, float, float, float]:
    """A square around a 2-D toy's data (means ± 3 std), enlarged by ``margin``."""
    means = getattr(denoiser, "means", None)
    if means is not None and tuple(denoiser.shape) == (2,):
        m = means.detach().cpu().double().numpy()
        spread = 3 * float(denoiser.variances.max().sqrt())
        lo, hi = m.min(0) - spread, m.max(0) + spread
    else:
        lo_v, hi_v = denoiser.data_range
        lo, hi = np.array([lo_v, lo_v]), np.array([hi_v, hi_v])
    centre, half = (lo + hi) / 2, float(max(hi - lo)) / 2 * margin
    return (float(centre[0] - half), float(centre[1] - half), 2 * half, 2 * half)


def points_rect(points: np.ndarray, base: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The base square, grown (about its centre) to hold 98% of the points."""
    cx, cy = base[0] + base[2] / 2, base[1] + base[3] / 2
    finite = points[np.isfinite(points).all(1)]
    if len(finite) == 0:
        return base
    reach = float(np.quantile(np.abs(finite - [cx, cy]).max(1), 0.98)) * 1.1
    half = max(base[2] / 2, reach)
    return (cx - half, cy - half, 2 * half, 2 * half)


class RunRecord:
    """A run as it happens: ``observe`` every event, ``frame(i)`` for any step, ``finish``.

    Used on the worker thread during the run and on the GUI thread afterwards, never
    both at once. ``pixels`` may be replaced from the GUI thread at any time (a tuple
    swap is atomic); the next frame traces the new set over the whole run so far.
    """

    def __init__(self, denoiser: Denoiser, config: RunConfig, denoiser_id: str,
                 pixels: Sequence[tuple[int, int]] = (), record_evals: bool = True) -> None:
        self.denoiser = denoiser
        self.shape = tuple(denoiser.shape)
        self.is_image = bool(denoiser.is_image)
        self.is_points = self.shape == (2,)
        self.data_range = tuple(float(v) for v in denoiser.data_range)
        self.config = config
        self.recorder = TrajectoryRecorder(config, denoiser_id, record_evals, data_range=self.data_range)
        self.pixels: tuple[tuple[int, int], ...] = tuple(pixels) if pixels else default_pixels(self.shape)
        self.shown = min(config.batch, MAX_TILES if self.is_image else MAX_PARTICLES)
        self.base_rect = data_rect(denoiser) if self.is_points else (0.0, 0.0, 1.0, 1.0)
        self.events: list[StepEvent] = []  # the events without tensors
        self._x: list[torch.Tensor] = []  # states of the shown samples (CPU views of the events' tensors)
        self.denoised: list[Optional[torch.Tensor]] = []
        self._evals_seen: list[tuple[float, int, torch.Tensor]] = []  # (σ, step, unscaled input)
        self.trajectory: Optional[Trajectory] = None
        self._t0: Optional[float] = None
        self._elapsed = 0.0
        self._density_cache: dict[int, Density] = {}
        self._projection: Optional[tuple[np.ndarray, np.ndarray]] = None
        self._last: Optional[tuple[tuple, StepFrame]] = None  # (pixels, frame) of the last state, made by finish
        self._latest: Optional[tuple[int, tuple, StepFrame]] = None  # (state, pixels, frame) last made for the live view

    # ------------------------------------------------------------------ recording
    def observe(self, event: StepEvent) -> None:
        """Record one event. Events' tensors are never modified, so the shown samples are
        kept by reference (no copy on the CPU; a small copy from a GPU)."""
        if self._t0 is None:
            self._t0 = time.perf_counter()
        self.recorder.add(event)
        k = self.shown
        self.events.append(_light(event))
        self._x.append(_host(event.x[:k]))
        self.denoised.append(None if event.denoised is None else _host(event.denoised[:k]))
        for sigma, x in zip(event.eval_sigma, event.eval_x):
            self._evals_seen.append((float(sigma), event.index, _host(x[:k])))
        self._elapsed = time.perf_counter() - self._t0

    def finish(self) -> "RunRecord":
        """Close the record: build the trajectory and, for images, the PCA projection
        (called once, on the worker thread, so the GUI never waits for them)."""
        self.trajectory = self.recorder.finish()
        if not self.is_points:
            self.projection()
        if self.events:  # the frame the finished run is first shown at, made here rather than on the GUI thread
            last, pixels = len(self.events) - 1, self.pixels
            live = self._latest
            # the live view's last frame when it shows the last state: the very object, so the
            # view knows it is drawn already
            frame = live[2] if live is not None and live[:2] == (last, pixels) else self.frame(last)
            self._last = (pixels, frame)
        return self

    @property
    def num_states(self) -> int:
        return len(self.events)

    @property
    def elapsed(self) -> float:
        """Seconds from the initial state to the latest step (the run's own speed)."""
        return self._elapsed

    def unscaled(self, i: int) -> torch.Tensor:
        """x/s of state i for the shown samples, float32."""
        return (self._x[i] / self.events[i].scale).to(torch.float32)

    def _paths(self, upto: int, rows: int) -> torch.Tensor:
        """x/s of states 0 … upto for the first ``rows`` samples, ``[S, rows, *shape]`` float32."""
        scales = torch.tensor([e.scale for e in self.events[: upto + 1]], dtype=torch.float64)
        states = torch.stack([x[:rows] for x in self._x[: upto + 1]])
        return (states / scales.reshape(-1, *([1] * (states.ndim - 1))).to(states.dtype)).to(torch.float32)

    def _evals(self, upto: int, rows: int) -> tuple[list[float], list[int], list[torch.Tensor]]:
        """(σ, step, unscaled input [rows, *shape]) of the stage evaluations of steps ≤ upto."""
        kept = [e for e in self._evals_seen if e[1] <= upto]
        return [e[0] for e in kept], [e[1] for e in kept], [e[2][:rows] for e in kept]

    # ------------------------------------------------------------------ frames
    def latest_frame(self, event: StepEvent) -> StepFrame:
        """The frame of the event just observed (the worker's ``convert``)."""
        i, pixels = len(self.events) - 1, self.pixels
        frame = self.frame(i)
        self._latest = (i, pixels, frame)
        return frame

    def frame(self, i: int, pictures: bool = True) -> StepFrame:
        """The frame of state ``i`` (0 = initial noise); without ``pictures`` only its numbers
        (step, NFE, σ, speed: what a status line needs, with no tensor work)."""
        i = max(0, min(i, len(self.events) - 1))
        if pictures and self._last is not None and i == len(self.events) - 1 and self._last[0] == self.pixels:
            return self._last[1]
        ev = self.events[i]
        elapsed = self._elapsed
        rate = (len(self.events) - 1) / elapsed if elapsed > 0 else 0.0
        frame = StepFrame(
            index=ev.index, total=ev.total_steps, nfe=ev.nfe, t=ev.t, sigma=ev.sigma, scale=ev.scale,
            order=ev.order, elapsed=elapsed, steps_per_second=rate,
            sigmas=np.array([e.sigma for e in self.events[: i + 1]], dtype=np.float64),
        )
        if pictures and self.is_image:
            self._image_frame(frame, i)
        elif pictures and self.is_points:
            self._point_frame(frame, i)
        return frame

    def _image_frame(self, frame: StepFrame, i: int) -> None:
        noisy = self.unscaled(i)
        cols = grid_shape(noisy.shape[0])[1]
        frame.noisy_image = tile(to_uint8(normalised(noisy, frame.sigma, self.data_range), self.data_range), cols, pad=PAD)
        den = self.denoised[i]
        if den is not None:
            frame.denoised_image = tile(to_uint8(den[: self.shown], self.data_range), cols, pad=PAD)
        frame.layout = MosaicLayout(self.shape[1], self.shape[2], cols, noisy.shape[0])
        pixels = self.pixels
        frame.pixels = pixels
        if pixels:
            rows = min(self.shown, TRACE_SAMPLES)
            scales = torch.tensor([e.scale for e in self.events[: i + 1]], dtype=torch.float64)
            values = torch.stack([_pixel_values(x[:rows], pixels) for x in self._x[: i + 1]])  # [S, rows, P]
            frame.pixel_traces = (values / scales[:, None, None]).to(torch.float32).numpy()
            sigmas, _, xs = self._evals(i, rows)
            frame.eval_sigmas = np.array(sigmas, dtype=np.float64)
            frame.eval_traces = (torch.stack([_pixel_values(x, pixels) for x in xs]).to(torch.float32).numpy() if xs
                                 else np.zeros((0, rows, len(pixels)), np.float32))

    def _point_frame(self, frame: StepFrame, i: int) -> None:
        paths = self._paths(i, self.shown)
        frame.paths = paths.numpy()
        frame.noisy_points = frame.paths[-1]
        den = self.denoised[i]
        frame.denoised_points = None if den is None else den[: self.shown].to(torch.float32).numpy()
        _, steps, xs = self._evals(i, self.shown)
        frame.eval_points = torch.cat(xs).to(torch.float32).numpy() if xs else np.zeros((0, 2), np.float32)
        frame.eval_steps = np.repeat(np.array(steps, dtype=int), [len(x) for x in xs]) if xs else np.zeros(0, int)
        frame.density = self.density(i)

    def density(self, i: int) -> Optional[Density]:
        """p(x; σ_i) over a square holding the points of state i (cached per state)."""
        if i not in self._density_cache:
            rect = points_rect(self.unscaled(i).numpy(), self.base_rect)
            dens = gmm_density(self.denoiser, self.events[i].sigma, rect)
            if dens is None:
                return None
            self._density_cache[i] = dens
        return self._density_cache[i]

    # ------------------------------------------------------------------ after the run
    def projection(self, max_rows: int = 1024) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """PCA over the run: (paths [S, B', 2], stage points [E·B', 2]) in the top-2 plane.

        Each state x/s is divided by √(1 + σ²) first, so noise and data have comparable
        size and the end of a path is not a dot next to its start (at σ = 80 the raw
        state is ~80× larger than the data). The axes are fitted on up to ``max_rows``
        states spread over the run (float32: this is a picture, and it runs after every run).
        """
        if self._projection is None and self.events:
            norms = torch.tensor([1 / math.sqrt(1 + e.sigma**2) for e in self.events], dtype=torch.float32)
            states = self._paths(len(self.events) - 1, self.shown)  # [S, B, *shape] float32
            raw = states.reshape(states.shape[0], states.shape[1], -1)  # [S, B, D]
            rows = raw.shape[0] * raw.shape[1]
            pick = torch.arange(rows) if rows <= max_rows else torch.linspace(0, rows - 1, max_rows).long()
            fit = raw.reshape(rows, -1)[pick] * norms.repeat_interleave(raw.shape[1])[pick, None]
            mean = fit.mean(0, keepdim=True)
            axes = top_axes(fit - mean, 2)  # [D, 2]
            offset = mean @ axes
            # projecting is linear: scale after projecting, so no scaled copy of the run is made
            paths = (raw @ axes) * norms[:, None, None] - offset
            sigmas, _, xs = self._evals(len(self.events) - 1, self.shown)
            ev_pts = (torch.cat([(x.reshape(x.shape[0], -1).to(torch.float32) @ axes) / math.sqrt(1 + sig**2)
                                 for sig, x in zip(sigmas, xs)]) - offset).numpy() if xs else np.zeros((0, 2))
            self._projection = (_pad2(paths.numpy()).astype(np.float32), _pad2(np.asarray(ev_pts)).astype(np.float32))
        return self._projection


def top_axes(centred: torch.Tensor, k: int, iterations: int = 6) -> torch.Tensor:
    """The top-k principal axes ``[D, k]`` of centred rows, by subspace iteration.

    A full SVD of a few thousand states of a 3×32×32 image takes seconds; a few
    products with a thin block take milliseconds and are exact enough for a picture.
    A fixed seed keeps the axes (and so the plot) the same for the same run.
    """
    d = centred.shape[1]
    q = min(d, k + 8)
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(d, q, generator=g, dtype=centred.dtype)
    for _ in range(iterations):
        basis, _ = torch.linalg.qr(centred.T @ (centred @ basis))
    _, _, v = torch.linalg.svd(centred @ basis, full_matrices=False)
    axes = basis @ v.T[:, :k]
    return axes if axes.shape[1] == k else torch.nn.functional.pad(axes, (0, k - axes.shape[1]))


def _host(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu")


def _light(event: StepEvent) -> StepEvent:
    """The event without its tensors (the record keeps its own CPU copies)."""
    return StepEvent(event.index, event.t, event.sigma, event.scale, torch.empty(0), None, event.nfe,
                     event.total_steps, list(event.eval_sigma), [], event.order)


def _pixel_values(x: torch.Tensor, pixels: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, P]``: each pixel's value (mean over channels for colour)."""
    rows = torch.tensor([p[0] for p in pixels])
    cols = torch.tensor([p[1] for p in pixels])
    return x[:, :, rows, cols].mean(1)


def _pad2(points: np.ndarray) -> np.ndarray:
    """A one-dimensional projection (data of a single dimension) gets a zero second axis."""
    if points.shape[-1] >= 2:
        return points
    return np.concatenate([points, np.zeros(points.shape[:-1] + (2 - points.shape[-1],))], -1)
