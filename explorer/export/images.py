"""Samples as uint8 pictures: conversion with fixed levels, and plain tiling.

The GUI's live frames and the labelled export grids (:mod:`explorer.export.grids`) build on these.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from PIL import Image

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
