"""Writing export files safely: every file is written to a temporary name, then renamed.

A failed write (no such folder, no permission, disk full, an error while encoding)
leaves no partial file behind and becomes a ``ValueError`` with one sentence naming the
file, which the CLI prints as one line and the GUI shows in a message.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Callable

from PIL import Image

from explorer.core.trajectory import atomic_write


def write_file(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` then rename onto ``path``; OS errors become a readable ValueError."""
    path = Path(path)
    try:
        return publish(atomic_write(path, write))
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"Could not write {str(path)!r}: {reason}.") from None


def publish(path: Path) -> Path:
    """Give a finished file the permissions a plain ``open`` would (the temporary file was 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return path


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """A PNG (or GIF/JPEG by suffix), written atomically."""
    path = Path(path)
    fmt = {".png": "PNG", ".gif": "GIF", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"Pictures are saved as .png, .gif or .jpg, not {path.name!r}.")
    return write_file(path, lambda tmp: image.save(tmp, format=fmt))


def canonical_safetensors(path: str | os.PathLike) -> None:
    """Rewrite a ``.safetensors`` header with sorted keys, in place.

    The safetensors library writes its metadata from a hash map, so two saves of the
    same tensors can differ in header order; sorting makes exports reproducible byte
    for byte. The tensor data and its offsets are untouched.
    """
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def save_safetensors(tensors: dict, metadata: dict[str, str], path: str | os.PathLike) -> Path:
    """Tensors and string metadata as a reproducible ``.safetensors`` file, written atomically."""
    from safetensors.torch import save_file

    def write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=metadata)
        canonical_safetensors(tmp)

    return write_file(path, write)


def save_text(text: str, path: str | os.PathLike) -> Path:
    """A UTF-8 text file (JSON, CSV), written atomically."""
    return write_file(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def output_dir(path: str | os.PathLike) -> Path:
    """An output folder, created if needed; a clear error when a file is in the way."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file, not a folder for the exports.")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"Could not create the folder {str(path)!r}: {err.strerror or err}.") from None
    return path
