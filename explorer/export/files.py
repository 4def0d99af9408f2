"""Export writers for pictures, text and folders, on top of :mod:`explorer.core.files`
(temporary file, then rename; a failed write is a ``ValueError`` naming the file)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional

from PIL import Image

from explorer.core.files import atomic_write, canonical_safetensors, save_safetensors  # noqa: F401 (re-exported)


def save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """A PNG (or GIF/JPEG by suffix), written atomically."""
    path = Path(path)
    fmt = {".png": "PNG", ".gif": "GIF", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"Pictures are saved as .png, .gif or .jpg, not {path.name!r}.")
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt))


def save_text(text: str, path: str | os.PathLike) -> Path:
    """A UTF-8 text file (JSON, CSV), written atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


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


@contextlib.contextmanager
def undo_on_error(written: list[Path], created: Optional[Path] = None) -> Iterator[None]:
    """On any error, remove the files listed in ``written`` (this call's outputs) and ``created``
    (a folder this call made) if it is left empty, then re-raise: a failed export leaves nothing."""
    try:
        yield
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                Path(path).unlink()
        if created is not None:
            with contextlib.suppress(OSError):
                created.rmdir()  # only succeeds when empty
        raise


def new_output_dir(path: str | os.PathLike) -> tuple[Path, Optional[Path]]:
    """:func:`output_dir`, and the folder itself again when this call created it (else None)."""
    existed = Path(path).exists()
    folder = output_dir(path)
    return folder, None if existed else folder
