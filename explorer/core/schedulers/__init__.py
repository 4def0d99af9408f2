"""Scheduler presets: other libraries' samplers expressed as explorer run settings.

``PRESETS`` maps a ``--preset`` name to a function ``(config_file_or_dict, steps) -> Preset``.
"""
from __future__ import annotations

from typing import Any, Callable, Union

from explorer.core.schedulers.diffusers import (
    Preset,
    diffusers_fields,
    read_scheduler_config,
)


def _diffusers(source: Union[str, dict, Any], steps: int) -> Preset:
    cfg = source if isinstance(source, dict) else read_scheduler_config(source)
    return diffusers_fields(cfg, steps)


PRESETS: dict[str, Callable[[Any, int], Preset]] = {"diffusers": _diffusers}


def apply_preset(name: str, source: Any, steps: int, base: Any) -> tuple[Any, list[str]]:
    """``base`` (a RunConfig) with the preset's fields, and the preset's notes."""
    try:
        fn = PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.") from None
    preset = fn(source, steps)
    return base.replace(**{**preset.fields, "steps": len(preset.fields["sigmas"]) - 1, "nfe": None}), preset.notes


__all__ = ["PRESETS", "Preset", "apply_preset"]
