"""Pictures of a run's steps: film strips (PNG) and animations (GIF, and MP4 through ffmpeg).

Frame i of a run shows its state at σ_i: in the **x₀** view the denoiser's estimate
D(x_i/s_i; σ_i) made at the start of step i+1 (and the final samples for the last
frame); in the **xₜ** view the state x_i/s_i itself. Noisy image states are shown
with their noise shrunk by sqrt(1 + (σ/r)²) (r = half the data range), so the picture
stays in range instead of clipping to salt and pepper; 2-D points are drawn where they
are, in a panel that follows them.
"""
from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from explorer.core.compare import index_at_sigma, sigma_axis
from explorer.core.trajectory import Trajectory
from explorer.core.files import atomic_write
from explorer.export.grids import arrange, check_drawable, image_cells, is_points, points_extent, points_panel
from explorer.export.images import MAX_PIXELS

SPACES = ("x0", "xt")
SYNCS = ("sigma", "step")
STRIP_FRAMES = 8  # columns of a film strip when no step interval is given
LAST_FRAME_MS = 1000  # the final frame of an animation is held this long


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ValueError(f"Unknown view {space!r}; choose x0 (denoised) or xt (noisy state).")


def frame_count(trajectory: Trajectory) -> int:
    return trajectory.num_steps + 1


def state_picture(trajectory: Trajectory, i: int, space: str, data_range: tuple[float, float]) -> torch.Tensor:
    """What frame i shows, in data units: ``[B, *shape]`` (see the module docstring)."""
    _check_space(space)
    n = trajectory.num_steps
    if not 0 <= i <= n:
        raise ValueError(f"Step {i} is outside the run's 0 … {n}.")
    final = trajectory.x[n] / trajectory.scale[n]
    if space == "x0":
        return final if i == n or i >= len(trajectory.denoised) else trajectory.denoised[i]
    y = trajectory.x[i] / trajectory.scale[i]
    if is_points(y):
        return y
    lo, hi = data_range
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return mid + (y - mid) / math.sqrt(1 + (float(trajectory.sigma[i]) / half) ** 2)


def step_label(trajectory: Trajectory, i: int) -> str:
    return f"step {i}/{trajectory.num_steps}\nσ={float(trajectory.sigma[i]):.3g}"


def strip_steps(trajectory: Trajectory, every: int = 0) -> list[int]:
    """Every k-th state (0, k, 2k, …) and always the last; ``every = 0`` picks k for about 8 frames."""
    n = trajectory.num_steps
    if every < 0:
        raise ValueError(f"The film strip's step interval must be zero (automatic) or positive (got {every}).")
    k = every or max(1, math.ceil(n / (STRIP_FRAMES - 1)))
    picks = list(range(0, n + 1, k))
    return picks if picks[-1] == n else picks + [n]


def film_strip(
    trajectory: Trajectory,
    data_range: tuple[float, float],
    every: int = 0,
    space: str = "x0",
    pad: int = 2,
    labels: bool = True,
    scale: int = 1,
    max_rows: Optional[int] = None,
    downscale: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """Each sample's row of every k-th step (2-D points: one panel per chosen step)."""
    picks = strip_steps(trajectory, every)
    pictures = [state_picture(trajectory, i, space, data_range) for i in picks]
    check_drawable(pictures[0])
    names = [step_label(trajectory, i) for i in picks] if labels else None
    if is_points(pictures[0]):
        shared = points_extent(*pictures) if space == "x0" else None
        panels = [points_panel(p, shared or points_extent(p)) for p in pictures]
        return arrange([panels], pad, names, downscale=downscale, max_pixels=max_pixels, what="film strip")
    rows = pictures[0].shape[0] if max_rows is None else min(max_rows, pictures[0].shape[0])
    per_step = [image_cells(p[:rows], data_range, scale) for p in pictures]
    cells = [[col[r] for col in per_step] for r in range(rows)]
    row_names = [f"seed {trajectory.config.seed + r}" for r in range(rows)] if labels else None
    return arrange(cells, pad, names, row_names, downscale=downscale, max_pixels=max_pixels, what="film strip")


def _frame_cells(picture: torch.Tensor, data_range: tuple[float, float], columns: int, scale: int,
                 extent: Optional[tuple[float, float, float, float]], color: str) -> list[list[Optional[Image.Image]]]:
    if is_points(picture):
        return [[points_panel(picture, extent or points_extent(picture), color)]]
    tiles = image_cells(picture, data_range, scale)
    rows = math.ceil(len(tiles) / columns)
    return [[tiles[r * columns + q] if r * columns + q < len(tiles) else None for q in range(columns)] for r in range(rows)]


def run_frames(
    trajectory: Trajectory,
    data_range: tuple[float, float],
    space: str = "x0",
    columns: Optional[int] = None,
    pad: int = 2,
    labels: bool = True,
    scale: int = 1,
    color: str = "#1F3C8C",
    downscale: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> list[Image.Image]:
    """One picture per state of a run: the batch as a grid, titled with the step and σ."""
    first = state_picture(trajectory, 0, space, data_range)
    check_drawable(first)
    cols = columns or max(1, math.ceil(math.sqrt(first.shape[0])))
    shared = None
    if is_points(first) and space == "x0":
        shared = points_extent(*[state_picture(trajectory, i, space, data_range) for i in range(frame_count(trajectory))])
    frames = []
    for i in range(frame_count(trajectory)):
        cells = _frame_cells(state_picture(trajectory, i, space, data_range), data_range, cols, scale, shared, color)
        title = step_label(trajectory, i).replace("\n", "   ") if labels else ""
        frames.append(arrange(cells, pad, title=title, downscale=downscale, max_pixels=max_pixels, what="animation frame"))
    return frames


def comparison_frames(
    trajectories: Sequence[Trajectory],
    names: Sequence[str],
    data_range: tuple[float, float],
    space: str = "x0",
    colors: Optional[Sequence[str]] = None,
    pad: int = 2,
    labels: bool = True,
    scale: int = 1,
    max_rows: int = 8,
    downscale: bool = False,
    max_pixels: int = MAX_PIXELS,
    sync: str = "sigma",
) -> list[Image.Image]:
    """Columns side by side. ``sync="sigma"``: one frame per noise level any column visits, each
    column at its state nearest in log σ (runs of different lengths line up); ``sync="step"``:
    frame i shows every column's step i (shorter runs hold their last state)."""
    if sync not in SYNCS:
        raise ValueError(f"Unknown animation sync {sync!r}; choose step or sigma.")
    colors = colors or ["#1F3C8C"] * len(trajectories)
    first = state_picture(trajectories[0], 0, space, data_range)
    check_drawable(first)
    if sync == "sigma":
        stops = sigma_axis(trajectories)
        plan = [(f"σ = {s:.3g}", [index_at_sigma(t, s) for t in trajectories]) for s in stops]
    else:
        total = max(frame_count(t) for t in trajectories)
        plan = [(f"step {i}", [min(i, t.num_steps) for t in trajectories]) for i in range(total)]
    frames = []
    for title, picks in plan:
        pics = [state_picture(t, i, space, data_range) for t, i in zip(trajectories, picks)]
        heads = [f"{n}\nstep {i} · σ={float(t.sigma[i]):.3g}" for n, t, i in zip(names, trajectories, picks)] if labels else None
        if is_points(first):
            extent = points_extent(*pics)
            cells = [[points_panel(p, extent, c) for p, c in zip(pics, colors)]]
        else:
            rows = min(max_rows, first.shape[0])
            per_col = [image_cells(p[:rows], data_range, scale) for p in pics]
            cells = [[col[r] for col in per_col] for r in range(rows)]
        frames.append(arrange(cells, pad, heads, title=title if labels else "", downscale=downscale,
                              max_pixels=max_pixels, what="animation frame"))
    return frames


# --------------------------------------------------------------------------- files
def _uniform(frames: Sequence[Image.Image]) -> list[Image.Image]:
    """Every frame on one canvas size and mode (titles can make sizes differ by a few pixels)."""
    if not frames:
        raise ValueError("An animation needs at least one frame.")
    w = max(f.width for f in frames)
    h = max(f.height for f in frames)
    out = []
    for f in frames:
        f = f.convert("RGB")
        if f.size != (w, h):
            canvas = Image.new("RGB", (w, h), "white")
            canvas.paste(f, (0, 0))
            f = canvas
        out.append(f)
    return out


def save_gif(frames: Sequence[Image.Image], path: str | Path, fps: float = 6.0) -> Path:
    """An endlessly looping GIF, one frame per step, the last held for a second."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"Animations are saved as .gif (or .mp4), not {path.name!r}.")
    if not (0 < fps <= 100):
        raise ValueError(f"Frames per second must lie in (0, 100] (got {fps:g}).")
    frames = _uniform(frames)
    step_ms = max(20, int(round(1000 / fps)))
    durations = [step_ms] * (len(frames) - 1) + [max(step_ms, LAST_FRAME_MS)]

    def write(tmp: str) -> None:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)

    return atomic_write(path, write)


def ffmpeg_path() -> Optional[str]:
    """The ffmpeg on PATH, or None (MP4 export is then unavailable)."""
    return shutil.which("ffmpeg")


def save_mp4(frames: Sequence[Image.Image], path: str | Path, fps: float = 6.0) -> Path:
    """An MP4 encoded by ffmpeg from raw frames (bit-exact flags, no metadata)."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"Videos are saved as .mp4, not {path.name!r}.")
    exe = ffmpeg_path()
    if exe is None:
        raise ValueError("MP4 export needs ffmpeg on PATH; install it or export a GIF instead.")
    frames = _uniform(frames)
    w, h = frames[0].size
    raw = b"".join(np.asarray(f, dtype=np.uint8).tobytes() for f in frames)

    def write(tmp: str) -> None:
        cmd = [
            exe, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2:color=white",
            "-pix_fmt", "yuv420p", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
            "-f", "mp4", tmp,
        ]
        done = subprocess.run(cmd, input=raw, capture_output=True)
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
            raise ValueError(f"ffmpeg could not encode {path.name}: {reason[0]}")

    return atomic_write(path, write)
