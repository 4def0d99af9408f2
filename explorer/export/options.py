"""What to export and how, and the comparison file that reproduces everything.

The comparison file is one JSON document: the :class:`Comparison` (model, seed, batch,
columns, reference) and the :class:`ExportOptions`. The GUI writes it with its exports;
``diffusion-explorer compare --config FILE --out DIR`` reads it and rebuilds every run
and every export, bit for bit, without the GUI.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorer.core.compare import Comparison, check_fields
from explorer.core.files import read_json_file
from explorer.export.files import save_text
from explorer.export.images import MAX_PIXELS
from explorer.export.steps import SPACES, SYNCS

DOCUMENT_FORMAT = "explorer-comparison/1"


@dataclass(frozen=True)
class ExportOptions:
    """Which files a comparison export writes, and how its pictures look.

    Attributes:
        sample_grid, comparison_grid, difference_grid, film_strip, animation, mp4,
        trajectories, plots: which exports to write (mp4 only where ffmpeg is installed).
        strip_every: film-strip step interval (0 = about 8 frames).
        strip_space, animation_space: "x0" (denoised) or "xt" (noisy state).
        animation_sync: the comparison animation's frames follow σ ("sigma", runs of
            different lengths line up by noise level) or the step index ("step").
        fps: animation frames per second.
        grid_columns: columns of each run's sample grid (0 = near square).
        pad: pixels between grid cells; labels: solver/step/seed captions.
        scale: nearest-neighbour enlargement of image cells (small images read better).
        max_rows: samples shown in comparison grids and animations (0 = all).
        downscale: shrink grids that exceed ``max_pixels`` instead of refusing them.
        plot_formats: "png" and/or "svg".
    """

    sample_grid: bool = True
    comparison_grid: bool = True
    difference_grid: bool = True
    film_strip: bool = True
    animation: bool = True
    mp4: bool = True
    trajectories: bool = True
    plots: bool = True
    strip_every: int = 0
    strip_space: str = "x0"
    animation_space: str = "x0"
    animation_sync: str = "sigma"
    fps: float = 6.0
    grid_columns: int = 0
    pad: int = 2
    labels: bool = True
    scale: int = 1
    max_rows: int = 8
    downscale: bool = False
    max_pixels: int = MAX_PIXELS
    plot_formats: tuple[str, ...] = ("png", "svg")

    def __post_init__(self) -> None:
        object.__setattr__(self, "plot_formats", tuple(self.plot_formats))
        for name in ("strip_space", "animation_space"):
            if getattr(self, name) not in SPACES:
                raise ValueError(f"{name} must be one of {', '.join(SPACES)} (got {getattr(self, name)!r}).")
        if self.animation_sync not in SYNCS:
            raise ValueError(f"animation_sync must be one of {', '.join(SYNCS)} (got {self.animation_sync!r}).")
        for name, low in (("strip_every", 0), ("grid_columns", 0), ("pad", 0), ("scale", 1), ("max_rows", 0), ("max_pixels", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be a whole number of at least {low} (got {value!r}).")
        if not isinstance(self.fps, (int, float)) or not (0 < self.fps <= 100):
            raise ValueError(f"fps must lie in (0, 100] (got {self.fps!r}).")
        bad = [f for f in self.plot_formats if f not in ("png", "svg")]
        if bad:
            raise ValueError(f"Plot formats are png and svg (got {', '.join(map(str, bad))}).")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["plot_formats"] = list(self.plot_formats)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> "ExportOptions":
        check_fields(cls, data, "The export options", "export option")
        return cls(**data)


def document(comparison: Comparison, options: ExportOptions) -> str:
    """The comparison file's text (sorted keys, so equal comparisons give equal files)."""
    doc = {"format": DOCUMENT_FORMAT, "comparison": comparison.to_dict(), "exports": options.to_dict()}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write_document(comparison: Comparison, options: ExportOptions, path: str | Path) -> Path:
    return save_text(document(comparison, options), path)


def read_document(path: str | Path) -> tuple[Comparison, ExportOptions]:
    """Read a comparison file; a bare comparison object (no "exports") gets the default options."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Comparison file {str(path)!r} does not exist.")
    data = read_json_file(path, "comparison file")
    try:
        return _document_parts(data, path)
    except ValueError as err:
        raise ValueError(f"{path.name}: {err}") from None


def _document_parts(data: Any, path: Path) -> tuple[Comparison, ExportOptions]:
    if isinstance(data, dict) and "comparison" in data:
        if data.get("format", DOCUMENT_FORMAT) != DOCUMENT_FORMAT:
            raise ValueError(f"{path.name} has format {data.get('format')!r}; this version reads {DOCUMENT_FORMAT}.")
        extra = set(data) - {"format", "comparison", "exports"}
        if extra:
            raise ValueError(f"{path.name} has unknown key(s): {', '.join(sorted(extra))}.")
        return Comparison.from_dict(data["comparison"]), ExportOptions.from_dict(data.get("exports", {}))
    return Comparison.from_dict(data), ExportOptions()
