"""Writing files safely: to a temporary name in the same folder, then renamed.

A failed write (no such folder, no permission, disk full, an error while encoding)
leaves no partial file behind and becomes a ``ValueError`` naming the file, which the
CLI prints as one line and the GUI shows in a message. Every writer of the project
(trajectories, checkpoints, exports) goes through :func:`atomic_write`.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

MAX_JSON_DEPTH = 64             # our own files nest 4 deep
MAX_JSON_BYTES = 64 * 1024**2   # a mixture or comparison file is kilobytes
MAX_ARRAY_BYTES = 4 * 1024**3   # one array read from .npy/.npz (noise, data sets, trajectories)
MAX_ZIP_RATIO = 100.0           # numbers deflate 1-3 times; zeros 1000 times


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
    except ValueError:
        _discard(tmp)
        raise
    except Exception as err:  # a library's own error for a full disk or a read-only folder (safetensors)
        _discard(tmp)
        raise ValueError(f"Could not write {str(path)!r}: {err}.") from None
    except BaseException:
        _discard(tmp)
        raise
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    """A UTF-8 text file written atomically (model cards, JSON)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ------------------------------------------------------------------------------ reading untrusted files

def _json_depth_ok(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def parse_json(text: str | bytes, label: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from an untrusted file or field: ValueError naming ``label`` for bad syntax or deep nesting."""
    if len(text) > MAX_JSON_BYTES:
        raise ValueError(f"{label} is {len(text):,} bytes of JSON, more than the limit of {MAX_JSON_BYTES:,}.")
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        deep = True
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        raise ValueError(f"{label} is not valid JSON ({err}).") from None
    else:
        deep = not _json_depth_ok(value, max_depth)
    if deep:
        raise ValueError(f"{label}: JSON nesting deeper than {max_depth} levels.")
    return value


def read_json_file(path: str | os.PathLike, what: str = "file") -> Any:
    """A JSON file (size, syntax and nesting checked); ValueError names the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ValueError(f"The {what} {path.name} is {size:,} bytes, more than the limit of {MAX_JSON_BYTES:,} for JSON.")
        raw = path.read_bytes()
    except OSError as err:
        raise ValueError(f"Cannot read the {what} {path}: {err.strerror or err}.") from None
    return parse_json(raw, f"The {what} {path.name}")


def _npy_header(stream: Any, label: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(stream)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = read(stream)
    except ValueError as err:
        raise ValueError(f"Could not read {label}: it is not a .npy array ({err}).") from None
    return shape, dtype, fortran


def read_npy(stream: Any, label: str, available: int, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """One ``.npy`` array from a stream, its header checked before anything is allocated.

    ``available`` is how many bytes the stream can give (the file size, or a zip member's size):
    an array that claims more is refused, so a forged header cannot make numpy allocate.
    """
    shape, dtype, fortran = _npy_header(stream, label)
    if dtype.hasobject or dtype.kind not in "biufcU":  # numbers, or the text of a metadata entry
        raise ValueError(f"{label} holds {dtype} values, not numbers.")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise ValueError(f"{label}: an array of shape {list(shape)} ({nbytes:,} bytes) is larger than the limit of "
                         f"{max_bytes:,} bytes.")
    if nbytes > available:
        raise ValueError(f"{label} is truncated or forged: its array needs {nbytes:,} bytes, the file holds {available:,}.")
    data = stream.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{label} is truncated: {len(data):,} of {nbytes:,} bytes.")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def read_arrays(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_BYTES,
                names: Optional[set[str]] = None, max_ratio: float = MAX_ZIP_RATIO) -> dict[str, np.ndarray]:
    """The arrays of a ``.npy`` (under the name ``""``) or ``.npz`` file, never unpickling, bounded in size.

    An ``.npz`` is a zip: every member's declared size is checked against ``max_bytes`` (in total)
    before it is inflated, and so is its compression ratio (numbers compress little; a member that
    claims to inflate more than ``max_ratio`` times is a zip bomb), so a bomb is refused by its
    directory, not by running out of memory. ``names`` restricts which members are read.
    """
    import zipfile

    path = Path(path)
    label = path.name
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as stream:
                return {"": read_npy(stream, label, path.stat().st_size, max_bytes)}
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".npy")
                       and (names is None or m.filename[:-4] in names)]
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise ValueError(f"{label} unpacks to {total:,} bytes, more than the limit of {max_bytes:,}.")
            for m in members:
                ratio = m.file_size / max(m.compress_size, 1)
                if m.file_size > 1 << 20 and ratio > max_ratio:
                    raise ValueError(f"{label}: {m.filename} inflates {ratio:,.0f} times ({m.compress_size:,} to "
                                     f"{m.file_size:,} bytes), more than the limit of {max_ratio:g} for arrays of "
                                     "numbers: refusing a zip bomb.")
            out = {}
            for member in members:
                with archive.open(member) as stream:
                    out[member.filename[:-4]] = read_npy(stream, f"{label}:{member.filename}", member.file_size, max_bytes)
            return out
    except ValueError:
        raise
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError) as err:
        raise ValueError(f"Could not read {label}: {err}") from None


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


def read_safetensors(path: str | os.PathLike, names: Optional[set[str]] = None,
                     max_bytes: int = MAX_ARRAY_BYTES) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (all, or those in ``names``) and metadata of a ``.safetensors`` file.

    The header is checked by safetensors itself (offsets inside the file); the tensors to read
    must fit ``max_bytes`` together, checked before any is read. Any failure is a ValueError.
    """
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            keys = [k for k in handle.keys() if names is None or k in names]
            total = 0
            for key in keys:
                view = handle.get_slice(key)
                total += math.prod(view.get_shape()) * _DTYPE_BYTES.get(view.get_dtype(), 8)
            if total > max_bytes:
                raise ValueError(f"{path.name} holds {total:,} bytes of tensors, more than the limit of {max_bytes:,}.")
            tensors = {k: handle.get_tensor(k) for k in keys}
    except ValueError:
        raise
    except Exception as err:  # safetensors raises its own error types for foreign or damaged files
        raise ValueError(f"Could not read {path.name} as a safetensors file: {err}") from None
    return tensors, meta


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
