"""Where an imported model came from: file hashes, licences and the model card written beside it.

Importers record the source of every model they open (class names, constructor arguments, the
sha256 of the file), so a converted checkpoint can always be traced back and its licence obeyed.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Union

from explorer.core.files import write_text

PathLike = Union[str, Path]

EDM_LICENCE = "CC BY-NC-SA 4.0"
EDM_LICENCE_NOTE = (
    "NVlabs EDM's released weights are licensed CC BY-NC-SA 4.0 (NVlabs/edm README.md): "
    "non-commercial use only, with attribution, and derivatives under the same licence. "
    "diffusion-explorer does not ship or redistribute them."
)
DIFFUSERS_LICENCE_NOTE = (
    "Weights loaded from a diffusers folder keep the licence of their original release; "
    "check the model card that came with them."
)


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def json_safe(value: Any) -> Any:
    """Recursively turn tuples, non-finite floats and other values into JSON-compatible ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no such numbers
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_model_card(path: PathLike, title: str, info: dict, licence_note: str,
                     checkpoint: Union[PathLike, None] = None) -> Path:
    """A short Markdown card next to a converted checkpoint: what it is, where it came from, licence."""
    lines = [f"# {title}", "", "Converted by `diffusion-explorer convert`.", "", "## Source", ""]
    for key in ("source_file", "source_format", "sha256", "precond_class", "model_class"):
        if key in info:
            lines.append(f"- {key.replace('_', ' ')}: `{info[key]}`")
    lines += ["", "## Constructor arguments", "", "```json",
              json.dumps(json_safe(info.get("init_kwargs", {})), indent=2), "```", "",
              "## Licence", "", licence_note, ""]
    try:
        return write_text("\n".join(lines), path)  # atomic: a full disk leaves no 0-byte card
    except ValueError:
        if checkpoint is not None:  # the checkpoint this call wrote goes too: no half-done conversion
            Path(checkpoint).unlink(missing_ok=True)
        raise
