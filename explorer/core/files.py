"""Writing files safely: to a temporary name in the same folder, then renamed.

A failed write (no such folder, no permission, disk full, an error while encoding)
leaves no partial file behind and becomes a ``ValueError`` naming the file, which the
CLI prints as one line and the GUI shows in a message. Every writer of the project
(trajectories, checkpoints, exports) goes through :func:`atomic_write`.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename onto ``path`` with ordinary permissions."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise ValueError(f"Could not write {str(path)!r}: the folder {str(directory)!r} does not exist.")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
        os.close(fd)
    except OSError as err:
        raise ValueError(f"Could not write {str(path)!r}: {err.strerror or err}.") from None
    try:
        write(tmp)
        _publish(tmp)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise ValueError(f"Could not write {str(path)!r}: {err.strerror or err}.") from None
    except BaseException:
        _discard(tmp)
        raise
    return path


def _publish(tmp: str) -> None:
    """Give the file the permissions a plain ``open`` would (mkstemp makes it 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)


def _discard(tmp: str) -> None:
    if os.path.exists(tmp):
        os.unlink(tmp)


def canonical_safetensors(path: str | os.PathLike) -> None:
    """Rewrite a ``.safetensors`` header with sorted keys, in place.

    The safetensors library writes its metadata from a hash map, so two saves of the
    same tensors can differ in header order; sorting makes files reproducible byte for
    byte. The tensor data and its offsets are untouched.
    """
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n :])


def save_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], path: str | os.PathLike) -> Path:
    """Tensors and string metadata as a reproducible ``.safetensors`` file, written atomically."""
    from safetensors.torch import save_file

    def write(tmp: str) -> None:
        save_file(dict(tensors), tmp, metadata=dict(metadata))
        canonical_safetensors(tmp)

    return atomic_write(path, write)
