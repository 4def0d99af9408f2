"""Labelled picture grids: samples, samples × solvers, differences, film strips.

Every grid is built from equal-size cells (one picture per sample for image data, one
scatter panel per run for 2-D points) by :func:`arrange`, which knows the final size
*before* allocating it: a grid above ``max_pixels`` is refused with the size it would
have, or its cells are shrunk until it fits when the caller asks for downscaling.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from explorer.export.images import MAX_PIXELS, to_uint8

FONT_SIZE = 12
MARGIN = 4
PANEL = 256  # side of a 2-D scatter panel, pixels
Cell = Optional[Image.Image]


@lru_cache(maxsize=4)
def label_font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib, so σ and × render), else Pillow's own font."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        return ImageFont.load_default(size=size)


def text_box(text: str) -> tuple[int, int]:
    """Width and height of (possibly multi-line) label text."""
    if not text:
        return 0, 0
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=label_font(), spacing=2)
    return right - min(left, 0), bottom - min(top, 0)


# --------------------------------------------------------------------------- layout
def arrange(
    cells: Sequence[Sequence[Cell]],
    pad: int = 2,
    col_labels: Optional[Sequence[str]] = None,
    row_labels: Optional[Sequence[str]] = None,
    title: str = "",
    downscale: bool = False,
    max_pixels: int = MAX_PIXELS,
    what: str = "grid",
) -> Image.Image:
    """Rows of equal-size cells (None = empty) with optional column/row labels and a title."""
    if pad < 0:
        raise ValueError(f"Padding must be zero or more pixels (got {pad}).")
    first = next((c for row in cells for c in row if c is not None), None)
    if first is None:
        raise ValueError(f"The {what} has nothing to show.")
    rows, cols = len(cells), max(len(r) for r in cells)
    cw, ch = first.size
    label_w = max((text_box(t)[0] for t in col_labels or ()), default=0)
    label_w = label_w + 2 * MARGIN if label_w else 0  # a column is at least as wide as its label
    head = max((text_box(t)[1] for t in col_labels or ()), default=0)
    head = head + 2 * MARGIN if head else 0
    left = max((text_box(t)[0] for t in row_labels or ()), default=0)
    left = left + 2 * MARGIN if left else 0
    top = text_box(title)[1] + 2 * MARGIN if title else 0

    def size(w: int, h: int) -> tuple[int, int]:
        return left + cols * (max(w, label_w) + pad) + pad, top + head + rows * (h + pad) + pad

    width, height = size(cw, ch)
    if width * height > max_pixels:
        if not downscale:
            raise ValueError(
                f"The {what} would be {width}×{height} pixels ({width * height:,}), more than the {max_pixels:,} "
                "allowed; export fewer samples or steps, or ask for it downscaled."
            )
        cw, ch = _shrink(cw, ch, size, max_pixels, what)
        width, height = size(cw, ch)
    pitch = max(cw, label_w)
    mode = "L" if all(c is None or c.mode == "L" for row in cells for c in row) else "RGB"
    white = 255 if mode == "L" else (255, 255, 255)
    out = Image.new(mode, (width, height), white)
    draw = ImageDraw.Draw(out)
    ink = 0 if mode == "L" else (0, 0, 0)
    font = label_font()
    if title:
        draw.multiline_text((left + MARGIN, MARGIN), title, fill=ink, font=font, spacing=2)
    for r, row in enumerate(cells):
        y = top + head + pad + r * (ch + pad)
        if row_labels and r < len(row_labels):
            draw.multiline_text((MARGIN, y + ch // 2), row_labels[r], fill=ink, font=font, anchor="lm", spacing=2)
        for q, cell in enumerate(row):
            if cell is None:
                continue
            if cell.size != (cw, ch):
                cell = cell.resize((cw, ch), Image.BILINEAR if downscale else Image.NEAREST)
            out.paste(cell.convert(mode), (left + pad + q * (pitch + pad) + (pitch - cw) // 2, y))
    for q, text in enumerate(col_labels or ()):
        x = left + pad + q * (pitch + pad) + pitch // 2
        draw.multiline_text((x, top + MARGIN), text, fill=ink, font=font, anchor="ma", align="center", spacing=2)
    return out


def _shrink(cw: int, ch: int, size, max_pixels: int, what: str) -> tuple[int, int]:
    """The largest cell size (same aspect) whose grid fits, or a ValueError when even 1 pixel does not."""
    lo, hi = 0.0, 1.0
    for _ in range(40):  # bisection on the shrink factor; the grid's area is monotone in it
        mid = (lo + hi) / 2
        w, h = max(1, int(cw * mid)), max(1, int(ch * mid))
        if size(w, h)[0] * size(w, h)[1] <= max_pixels:
            lo = mid
        else:
            hi = mid
    w, h = max(1, int(cw * lo)), max(1, int(ch * lo))
    if size(w, h)[0] * size(w, h)[1] > max_pixels:
        raise ValueError(f"The {what} cannot fit {max_pixels:,} pixels even with 1-pixel cells; export fewer samples or steps.")
    return w, h


# --------------------------------------------------------------------------- cells
def is_points(samples: torch.Tensor) -> bool:
    """2-D point data (drawn as scatter panels) rather than images."""
    return samples.ndim == 2 and samples.shape[1] == 2


def check_drawable(samples: torch.Tensor) -> None:
    if not (is_points(samples) or (samples.ndim == 4 and samples.shape[1] in (1, 3))):
        raise ValueError(f"Samples of shape {tuple(samples.shape[1:])} cannot be drawn as images or 2-D points.")


def image_cells(images: torch.Tensor, data_range: tuple[float, float], scale: int = 1) -> list[Image.Image]:
    """One picture per sample of ``[B, C, H, W]`` data (fixed levels from the data range)."""
    if scale < 1:
        raise ValueError(f"The enlargement factor must be a whole number of at least 1 (got {scale}).")
    frames = to_uint8(images, data_range)
    out = []
    for f in frames:
        img = Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f)
        out.append(img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img)
    return out


def points_extent(*point_sets: torch.Tensor, quantile: float = 0.995) -> tuple[float, float, float, float]:
    """A square (x0, x1, y0, y1) holding nearly all the points of every set, shared by the panels."""
    pts = torch.cat([p.detach().to(torch.float64).cpu().reshape(-1, 2) for p in point_sets]).numpy()
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) == 0:
        return (-1.0, 1.0, -1.0, 1.0)
    lo, hi = np.quantile(pts, 1 - quantile, 0), np.quantile(pts, quantile, 0)
    mid, half = (lo + hi) / 2, float(max(hi - lo)) * 0.55 + 1e-6
    return (mid[0] - half, mid[0] + half, mid[1] - half, mid[1] + half)


def points_panel(
    points: torch.Tensor,
    extent: tuple[float, float, float, float],
    color: str = "#1F3C8C",
    reference: Optional[torch.Tensor] = None,
    size: int = PANEL,
) -> Image.Image:
    """2-D points on white, in one colour; with ``reference`` also the reference points (black)
    and a grey segment from each point to its reference: the 2-D form of a difference image."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    x0, x1, y0, y1 = extent

    def px(p: torch.Tensor) -> np.ndarray:
        a = p.detach().to(torch.float64).cpu().numpy().reshape(-1, 2)
        return np.stack([(a[:, 0] - x0) / (x1 - x0) * (size - 1), (1 - (a[:, 1] - y0) / (y1 - y0)) * (size - 1)], 1)

    mine = px(points)
    r = 2.0 if len(mine) < 500 else 1.2
    if reference is not None:
        ref = px(reference)
        for (u, v), (a, b) in zip(mine, ref):
            if np.isfinite([u, v, a, b]).all():
                draw.line((u, v, a, b), fill=(170, 170, 170), width=1)
        for a, b in ref:
            if np.isfinite([a, b]).all():
                draw.ellipse((a - r, b - r, a + r, b + r), fill=(0, 0, 0))
    for u, v in mine:
        if np.isfinite([u, v]).all():
            draw.ellipse((u - r, v - r, u + r, v + r), fill=color)
    draw.rectangle((0, 0, size - 1, size - 1), outline=(200, 200, 200))
    return img


# Heat colours for difference magnitudes: black → purple → orange → pale yellow.
_HEAT = np.array([[0, 0, 0], [90, 20, 120], [230, 90, 30], [255, 250, 200]], dtype=np.float64)


def difference_cells(diff: torch.Tensor, limit: float, scale: int = 1) -> list[Image.Image]:
    """|difference| per pixel (RMS over channels) as heat-coloured pictures, 0 … ``limit``."""
    mag = diff.detach().to(torch.float64).cpu().square().mean(1).sqrt().numpy()  # [B, H, W]
    level = np.clip(mag / max(limit, 1e-300), 0, 1) * (len(_HEAT) - 1)
    low = np.floor(level).astype(int).clip(0, len(_HEAT) - 2)
    frac = (level - low)[..., None]
    rgb = (_HEAT[low] * (1 - frac) + _HEAT[low + 1] * frac).round().astype(np.uint8)
    cells = [Image.fromarray(c) for c in rgb]
    return [c.resize((c.width * scale, c.height * scale), Image.NEAREST) for c in cells] if scale > 1 else cells


def difference_limit(diffs: Sequence[torch.Tensor]) -> float:
    """One level for every column's difference picture (the 99.5th percentile), so they compare."""
    mags = torch.cat([d.detach().to(torch.float64).cpu().square().mean(1).sqrt().reshape(-1) for d in diffs])
    return float(torch.quantile(mags, 0.995)) if mags.numel() else 1.0


# --------------------------------------------------------------------------- grids
def sample_grid(
    samples: torch.Tensor,
    data_range: tuple[float, float],
    columns: Optional[int] = None,
    pad: int = 2,
    labels: bool = False,
    seed: int = 0,
    scale: int = 1,
    downscale: bool = False,
    max_pixels: int = MAX_PIXELS,
    title: str = "",
) -> Image.Image:
    """Final samples as rows × columns (labels: the seed of each row's first sample and the
    column offset, so any sample can be drawn again with ``--seed``); 2-D points as one panel."""
    check_drawable(samples)
    if is_points(samples):
        panel = points_panel(samples, points_extent(samples), size=PANEL * scale)
        return arrange([[panel]], pad, title=title if labels else "", downscale=downscale, max_pixels=max_pixels, what="sample grid")
    count = samples.shape[0]
    cols = columns or max(1, math.ceil(math.sqrt(count)))
    if cols < 1:
        raise ValueError(f"A grid needs at least one column (got {cols}).")
    rows = math.ceil(count / cols)
    tiles = image_cells(samples, data_range, scale)
    cells = [[tiles[r * cols + q] if r * cols + q < count else None for q in range(cols)] for r in range(rows)]
    col_labels = [f"+{q}" for q in range(cols)] if labels else None
    row_labels = [f"seed {seed + r * cols}" for r in range(rows)] if labels else None
    return arrange(cells, pad, col_labels, row_labels, title if labels else "", downscale, max_pixels, "sample grid")


def _points_row(samples: Sequence[torch.Tensor], names: Optional[list[str]], colors: Optional[Sequence[str]],
                pad: int, downscale: bool, max_pixels: int, what: str, reference: Optional[torch.Tensor] = None) -> Image.Image:
    """2-D columns as one row of scatter panels on a shared extent (joined to ``reference`` when given)."""
    extent = points_extent(*samples) if reference is None else points_extent(reference, *samples)
    colors = colors or ["#1F3C8C"] * len(samples)
    panels = [points_panel(s, extent, c, reference) for s, c in zip(samples, colors)]
    return arrange([panels], pad, names, None, downscale=downscale, max_pixels=max_pixels, what=what)


def _sample_rows(per_column: Sequence[Sequence[Image.Image]], names: Optional[list[str]], seed: int, labels: bool,
                 pad: int, downscale: bool, max_pixels: int, what: str, title: str = "") -> Image.Image:
    """Image columns turned into rows of samples, each row labelled with its seed."""
    count = len(per_column[0])
    cells = [[col[r] for col in per_column] for r in range(count)]
    rows = [f"seed {seed + r}" for r in range(count)] if labels else None
    return arrange(cells, pad, names, rows, title, downscale, max_pixels, what)


def comparison_grid(
    samples: Sequence[torch.Tensor],
    column_labels: Sequence[str],
    data_range: tuple[float, float],
    colors: Optional[Sequence[str]] = None,
    pad: int = 2,
    labels: bool = True,
    seed: int = 0,
    scale: int = 1,
    downscale: bool = False,
    max_pixels: int = MAX_PIXELS,
    max_rows: Optional[int] = None,
) -> Image.Image:
    """Samples (rows) × solvers (columns); for 2-D points one scatter panel per solver."""
    if not samples:
        raise ValueError("The comparison grid needs at least one column.")
    for s in samples:
        check_drawable(s)
    names = list(column_labels) if labels else None
    if is_points(samples[0]):
        return _points_row(samples, names, colors, pad, downscale, max_pixels, "comparison grid")
    count = samples[0].shape[0] if max_rows is None else min(max_rows, samples[0].shape[0])
    per_column = [image_cells(s[:count], data_range, scale) for s in samples]
    return _sample_rows(per_column, names, seed, labels, pad, downscale, max_pixels, "comparison grid")


def difference_grid(
    diffs: Sequence[torch.Tensor],
    column_labels: Sequence[str],
    samples: Optional[Sequence[torch.Tensor]] = None,
    reference: Optional[torch.Tensor] = None,
    colors: Optional[Sequence[str]] = None,
    pad: int = 2,
    labels: bool = True,
    seed: int = 0,
    scale: int = 1,
    downscale: bool = False,
    max_pixels: int = MAX_PIXELS,
    max_rows: Optional[int] = None,
) -> Image.Image:
    """Each column's difference from the reference: heat pictures on one shared level, or for
    2-D points each solver's samples joined to the reference's."""
    if not diffs:
        raise ValueError("The difference grid needs at least one column.")
    names = list(column_labels) if labels else None
    if is_points(diffs[0]):
        if samples is None or reference is None:
            raise ValueError("A 2-D difference panel needs the samples and the reference.")
        return _points_row(samples, names, colors, pad, downscale, max_pixels, "difference grid", reference)
    limit = difference_limit(diffs)
    count = diffs[0].shape[0] if max_rows is None else min(max_rows, diffs[0].shape[0])
    per_column = [difference_cells(d[:count], limit, scale) for d in diffs]
    title = f"|difference from reference|, black 0 … white {limit:.3g}" if labels else ""
    return _sample_rows(per_column, names, seed, labels, pad, downscale, max_pixels, "difference grid", title)
