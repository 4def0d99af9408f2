"""Turning samples into pictures: uint8 conversion, grids, and 2-D scatter plots.

Used by the CLI's ``--grid``, the exporters and the GUI (which receives uint8 frames).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

MAX_PIXELS = 100_000_000  # refuse grids larger than this (≈ 400 MB of RGBA)


def to_uint8(images: torch.Tensor, data_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """``[B, C, H, W]`` floats in ``data_range`` → ``[B, H, W, C]`` uint8 (fixed levels, clipped)."""
    lo, hi = data_range
    x = images.detach().to(torch.float32).cpu()
    x = ((x - lo) / (hi - lo)).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def grid_shape(count: int, columns: Optional[int] = None) -> tuple[int, int]:
    """(rows, columns) of a near-square grid for ``count`` tiles."""
    cols = columns or max(1, math.ceil(math.sqrt(count)))
    return math.ceil(count / cols), cols


def tile(frames: np.ndarray, columns: Optional[int] = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """``[B, H, W, C]`` uint8 → one ``[rows·(H+pad)+pad, …, C]`` uint8 mosaic."""
    b, h, w, c = frames.shape
    rows, cols = grid_shape(b, columns)
    height, width = rows * (h + pad) + pad, cols * (w + pad) + pad
    if height * width > MAX_PIXELS:
        raise ValueError(f"The grid would be {width}×{height} pixels, more than the {MAX_PIXELS:,} allowed; use fewer samples or downscale.")
    out = np.full((height, width, c), fill, dtype=np.uint8)
    for k in range(b):
        r, q = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y : y + h, x : x + w] = frames[k]
    return out


def to_pil(mosaic: np.ndarray, scale: int = 1) -> Image.Image:
    """A uint8 ``[H, W, 1|3]`` array as a Pillow image, optionally enlarged (nearest)."""
    img = Image.fromarray(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def scatter_image(points: torch.Tensor, extent: Optional[Sequence[float]] = None, size: int = 512) -> Image.Image:
    """2-D samples ``[B, 2]`` as a white picture with one dark dot per sample."""
    pts = points.detach().to(torch.float64).cpu().numpy()
    if extent is None:
        lo, hi = np.nanmin(pts, 0), np.nanmax(pts, 0)
        span = float(max(hi - lo)) * 0.55 + 1e-9
        mid = (lo + hi) / 2
        extent = (mid[0] - span, mid[0] + span, mid[1] - span, mid[1] + span)
    x0, x1, y0, y1 = extent
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    px = (pts[:, 0] - x0) / (x1 - x0) * (size - 1)
    py = (1 - (pts[:, 1] - y0) / (y1 - y0)) * (size - 1)
    for u, v in zip(px, py):
        if np.isfinite(u) and np.isfinite(v):
            draw.ellipse((u - 1.5, v - 1.5, u + 1.5, v + 1.5), fill=(30, 60, 140))
    return img


def samples_image(samples: torch.Tensor, data_range: tuple[float, float], columns: Optional[int] = None, scale: int = 1) -> Image.Image:
    """Final samples as a picture: an image grid, or a scatter plot for 2-D points."""
    if samples.ndim == 4 and samples.shape[1] in (1, 3):
        return to_pil(tile(to_uint8(samples, data_range), columns), scale)
    if samples.ndim == 2 and samples.shape[1] == 2:
        return scatter_image(samples)
    raise ValueError(f"Samples of shape {tuple(samples.shape[1:])} cannot be drawn as images or 2-D points.")
