"""The image sets the shipped checkpoints were trained on, and a user's own images.

Every loader returns an :class:`ImageSet`: float32 ``[N, C, H, W]`` in [-1, 1] (the data range
the samplers and the preconditioners assume, SPEC §3), plus integer labels where the set has them.

* ``fashion``: Fashion-MNIST (Zalando, MIT licence) from Debian's ``dataset-fashion-mnist``
  idx files; 28x28 padded with background to 32x32 so the UNet's three resolutions divide evenly.
* ``emoji``: every code point of Noto Color Emoji (SIL OFL) rendered to 32x32 RGB on a white
  background, cached as ``emoji32.npz`` because rendering takes a minute.
* a folder of images, or a ``.npy``/``.npz`` array: whatever the user brings.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_CACHE_NAME = "emoji32.npz"
EMOJI_BACKGROUND = (255, 255, 255)
# Noto Color Emoji is a CBDT bitmap font with a single strike; FreeType only loads it at this size.
EMOJI_FONT_SIZE = 109
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

PathLike = Union[str, os.PathLike]


@dataclass
class ImageSet:
    """Images in [-1, 1] as float32 NCHW, with optional labels and what augmentation suits them.

    ``hflip`` says whether a horizontal mirror is still a plausible sample (true for emoji; false
    for Fashion-MNIST, whose garments are centred and mostly symmetric anyway, so EDM-style
    training on it uses no augmentation).
    """

    images: torch.Tensor
    labels: Optional[torch.Tensor] = None
    name: str = "images"
    licence: str = ""
    hflip: bool = False
    class_names: Sequence[str] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of one sample, ``(C, H, W)``."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]


def uint8_to_unit(array: np.ndarray) -> torch.Tensor:
    """Map uint8 NCHW pixels to float32 in [-1, 1] (0 -> -1, 255 -> 1)."""
    return torch.from_numpy(np.ascontiguousarray(array)).float().div_(127.5).sub_(1.0)


# ----------------------------------------------------------------------------- Fashion-MNIST


def read_idx(path: PathLike) -> np.ndarray:
    """Read one (optionally gzipped) idx file, the format MNIST-like sets ship in.

    The header is two zero bytes, a type code (0x08 = uint8), the number of dimensions and
    then one big-endian uint32 size per dimension.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes.")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {body.size} bytes.")
    return body.reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {root}; install Debian's "
        "dataset-fashion-mnist or pass --data-dir with the idx files."
    )


def load_fashion_uint8(split: str = "train", root: Optional[PathLike] = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw Fashion-MNIST: uint8 images ``[N, 28, 28]`` and labels ``[N]``."""
    if split not in ("train", "test"):
        raise ValueError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}.")
    root = Path(root) if root is not None else FASHION_DIR
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"Fashion-MNIST {split} files in {root} disagree: {images.shape} vs {labels.shape}.")
    return images, labels


def load_fashion(split: str = "train", root: Optional[PathLike] = None) -> ImageSet:
    """Fashion-MNIST as 1x32x32 images in [-1, 1] (2 pixels of black background on each side)."""
    images, labels = load_fashion_uint8(split, root)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))[:, None]
    return ImageSet(
        images=uint8_to_unit(padded),
        labels=torch.from_numpy(labels.astype(np.int64)),
        name=f"fashion-mnist-{split}",
        licence="MIT (Zalando SE)",
        hflip=False,
        class_names=FASHION_CLASSES,
    )


# ----------------------------------------------------------------------------- Noto Color Emoji


def font_code_points(font_path: PathLike) -> list[int]:
    """Every Unicode code point the font's cmap maps to a glyph (formats 4 and 12).

    A small reader of the OpenType ``cmap`` table, so that no font library is needed; it
    takes the first Unicode subtable of a format it understands, preferring the full-range
    format 12 over the BMP-only format 4.
    """
    data = Path(font_path).read_bytes()
    num_tables = struct.unpack_from(">H", data, 4)[0]
    cmap = None
    for i in range(num_tables):
        tag, _, offset, _ = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        if tag == b"cmap":
            cmap = offset
    if cmap is None:
        raise ValueError(f"{font_path} has no cmap table.")
    subtables = []
    for i in range(struct.unpack_from(">H", data, cmap + 2)[0]):
        platform, encoding, offset = struct.unpack_from(">HHI", data, cmap + 4 + 8 * i)
        if platform == 0 or (platform == 3 and encoding in (1, 10)):
            fmt = struct.unpack_from(">H", data, cmap + offset)[0]
            subtables.append((fmt, cmap + offset))
    for want in (12, 4):
        for fmt, at in subtables:
            if fmt == want:
                return sorted(_cmap12(data, at) if fmt == 12 else _cmap4(data, at))
    raise ValueError(f"{font_path} has no Unicode cmap subtable of format 4 or 12.")


def _cmap12(data: bytes, at: int) -> set[int]:
    groups = struct.unpack_from(">I", data, at + 12)[0]
    points: set[int] = set()
    for g in range(groups):
        start, end, _ = struct.unpack_from(">III", data, at + 16 + 12 * g)
        points.update(range(start, end + 1))
    return points


def _cmap4(data: bytes, at: int) -> set[int]:
    segs = struct.unpack_from(">H", data, at + 6)[0] // 2
    ends = struct.unpack_from(f">{segs}H", data, at + 14)
    starts = struct.unpack_from(f">{segs}H", data, at + 16 + 2 * segs)
    return {c for s, e in zip(starts, ends) for c in range(s, e + 1) if c != 0xFFFF}


def render_glyph(font, code_point: int, size: int = 32, background=EMOJI_BACKGROUND) -> Optional[np.ndarray]:
    """One emoji as ``[size, size, 3]`` uint8, or None when the font draws nothing for it.

    The glyph's alpha bounding box is centred on a square canvas (aspect kept), composited on
    the background at full resolution, then reduced with a Lanczos filter; compositing before
    reducing keeps the edges free of dark fringes.
    """
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    try:
        ImageDraw.Draw(canvas).text((20, 20), chr(code_point), font=font, embedded_color=True)
    except (RuntimeError, OSError):  # the shaper rejects a few control code points
        return None
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), background + (255,))
    square.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    small = square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def render_emoji(font_path: PathLike = EMOJI_FONT, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Render every code point the font draws: uint8 ``[N, 3, size, size]`` and the code points.

    Plain ASCII digits, '#', '*' and spaces are in the font's cmap (for keycap sequences) but are
    not pictures; they are skipped.
    """
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_path), EMOJI_FONT_SIZE)
    images, kept = [], []
    for cp in font_code_points(font_path):
        if cp < 0x80 or cp in (0x200D, 0xFE0F, 0x20E3):  # ASCII and joiners/selectors
            continue
        pixels = render_glyph(font, cp, size)
        if pixels is not None:
            images.append(pixels.transpose(2, 0, 1))
            kept.append(cp)
    if not images:
        raise ValueError(f"{font_path} drew no glyphs; is it a colour emoji font?")
    return np.stack(images), np.asarray(kept, dtype=np.int64)


def default_cache_dir() -> Path:
    """Where rendered data sets are cached (``$XDG_CACHE_HOME/diffusion-explorer``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "diffusion-explorer"


def load_emoji(cache_dir: Optional[PathLike] = None, font_path: PathLike = EMOJI_FONT) -> ImageSet:
    """Noto Color Emoji at 32x32 RGB, rendered once and then read from ``emoji32.npz``."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_file = cache / EMOJI_CACHE_NAME
    if cache_file.is_file():
        with np.load(cache_file) as npz:
            pixels, code_points = npz["images"], npz["code_points"]
    else:
        if not Path(font_path).is_file():
            raise FileNotFoundError(
                f"Neither {cache_file} nor the font {font_path} exists; install fonts-noto-color-emoji."
            )
        pixels, code_points = render_emoji(font_path)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache_file, images=pixels, code_points=code_points)
    return ImageSet(
        images=uint8_to_unit(pixels),
        labels=None,
        name="noto-color-emoji-32",
        licence="SIL Open Font License 1.1 (Noto Color Emoji, Google)",
        hflip=True,
    )


# ----------------------------------------------------------------------------- a user's own data


def load_array(path: PathLike) -> ImageSet:
    """Images from a ``.npy`` or ``.npz`` (key ``images``, or the only array; ``labels`` optional).

    Accepted layouts: NCHW or NHWC with 1 or 3 channels, or NHW (grey). uint8 arrays are taken
    as 0..255; float arrays must already lie in [-1, 1] or [0, 1] (the latter is rescaled).
    """
    path = Path(path)
    labels = None
    meta: dict = {}
    try:
        if path.suffix == ".npz":
            with np.load(path) as npz:
                keys = list(npz.keys())
                key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise ValueError(f"{path} holds {keys}; name the image array 'images'.")
                array = npz[key]
                labels = npz["labels"] if "labels" in keys else None
                if "meta" in keys:  # a file written by save_packed describes its set
                    import json

                    meta = json.loads(str(npz["meta"]))
        else:
            array = np.load(path)
    except (OSError, EOFError) as err:
        raise ValueError(f"Cannot read {path} as a NumPy array: {err}.") from err
    images = _to_unit_nchw(np.asarray(array), str(path))
    label_tensor = torch.from_numpy(np.asarray(labels).astype(np.int64)) if labels is not None else None
    return ImageSet(images=images, labels=label_tensor, **{"name": path.stem, "hflip": False, **meta})


def _to_unit_nchw(array: np.ndarray, where: str) -> torch.Tensor:
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or len(array) == 0:
        raise ValueError(f"{where}: expected a non-empty stack of images [N, C, H, W], got shape {array.shape}.")
    if array.shape[1] not in (1, 3) and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.shape[1] not in (1, 3):
        raise ValueError(f"{where}: images need 1 or 3 channels, got shape {array.shape}.")
    if array.dtype == np.uint8:
        return uint8_to_unit(array)
    images = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not torch.isfinite(images).all():
        raise ValueError(f"{where}: the array holds NaN or infinite values.")
    low, high = float(images.min()), float(images.max())
    if low >= 0.0 and high <= 1.0:
        return images.mul(2.0).sub(1.0)
    if low < -1.0 - 1e-3 or high > 1.0 + 1e-3:
        raise ValueError(f"{where}: float images must lie in [0, 1] or [-1, 1], found [{low:.3g}, {high:.3g}].")
    return images.clamp(-1.0, 1.0)


def load_folder(path: PathLike, size: Optional[int] = None, channels: int = 3) -> ImageSet:
    """Every image file in a folder (not recursive), resized to ``size`` x ``size`` if given.

    Without ``size`` all images must already share one size. ``channels`` 1 converts to grey.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for file in files:
        try:
            with Image.open(file) as img:
                img = img.convert(mode)
                if size is not None:
                    img = img.resize((size, size), Image.Resampling.LANCZOS)
                arrays.append(np.asarray(img, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"Cannot read the image {file}: {err}.") from err
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"The images in {folder} differ in size; pass a size to resize them.")
    stacked = np.stack(arrays)
    stacked = stacked[:, None] if channels == 1 else stacked.transpose(0, 3, 1, 2)
    return ImageSet(images=uint8_to_unit(stacked), name=folder.name, hflip=True)


def load_dataset(spec: str, data_dir: Optional[PathLike] = None, size: Optional[int] = None) -> ImageSet:
    """Resolve a ``--data`` value: ``fashion``, ``fashion-test``, ``emoji``, a folder or an array file.

    ``data_dir`` is where Fashion-MNIST's idx files are (default: Debian's location) or where the
    emoji cache lives (default: the user cache directory).
    """
    if spec in ("fashion", "fashion-train"):
        return load_fashion("train", data_dir)
    if spec == "fashion-test":
        return load_fashion("test", data_dir)
    if spec == "emoji":
        return load_emoji(data_dir)
    path = Path(spec)
    if path.is_dir():
        return load_folder(path, size=size)
    if path.suffix in (".npy", ".npz") and path.is_file():
        return load_array(path)
    if not path.exists():
        raise ValueError(f"--data must be 'fashion', 'emoji', a folder of images or a .npy/.npz file; {spec!r} is none of these.")
    raise ValueError(f"{spec} is neither a folder of images nor a .npy/.npz array.")


def unit_to_uint8(images: torch.Tensor) -> Optional[torch.Tensor]:
    """The uint8 pixels whose :func:`uint8_to_unit` is exactly ``images``, or None if there are none.

    Images loaded from 8-bit sources round-trip exactly, so the GPU can hold them at a quarter of
    the memory and convert each batch on the fly with the very same arithmetic.
    """
    pixels = images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels if torch.equal(pixels.float().div_(127.5).sub_(1.0), images) else None


def save_packed(data: ImageSet, path: PathLike) -> Path:
    """Write an image set as a compressed ``.npz`` of uint8 pixels, labels and its description.

    The GPU machine has neither Debian's data packages nor the emoji font; a packed file carries
    the training set there and :func:`load_array` reads it back as the same :class:`ImageSet`.
    """
    import json

    pixels = unit_to_uint8(data.images)
    if pixels is None:
        raise ValueError(f"The image set {data.name!r} is not 8-bit; only 8-bit sets can be packed.")
    meta = {"name": data.name, "licence": data.licence, "hflip": data.hflip, "class_names": list(data.class_names)}
    arrays = {"images": pixels.numpy(), "meta": np.array(json.dumps(meta))}
    if data.labels is not None:
        arrays["labels"] = data.labels.numpy().astype(np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


class BatchStream:
    """Random batches (with replacement across epochs) from an :class:`ImageSet` on one device.

    The whole set lives on the device (Fashion-MNIST is 61 MB as uint8, 245 MB as float32), so
    drawing a batch is one index operation, and flips are done there too. All randomness comes
    from the given generator, whose state the training loop saves, so a resumed run draws the
    same batches it would have drawn. ``uint8`` keeps 8-bit sets as bytes (the batch comes out
    bit-identical to the float path); ``labels`` also returns one-hot class rows for each image.
    """

    def __init__(self, data: ImageSet, batch: int, device: torch.device, generator: torch.Generator,
                 uint8: bool = False, labels: bool = False):
        if batch < 1:
            raise ValueError(f"The batch size must be at least 1, got {batch}.")
        pixels = unit_to_uint8(data.images) if uint8 else None
        self.images = (pixels if pixels is not None else data.images).to(device)
        self.onehot = None
        if labels:
            if data.labels is None:
                raise ValueError(f"The data set {data.name!r} has no labels, so it cannot train a class-conditional model.")
            classes = max(len(data.class_names), int(data.labels.max()) + 1)
            self.onehot = torch.nn.functional.one_hot(data.labels.long(), classes).float().to(device)
        self.hflip = data.hflip
        self.batch = batch
        self.generator = generator

    def draw(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """One batch ``[batch, C, H, W]`` in [-1, 1] (half of it mirrored when the set allows flips)
        and its one-hot labels ``[batch, classes]`` (None unless asked for)."""
        n = self.images.shape[0]
        dev = self.images.device
        index = torch.randint(0, n, (self.batch,), device=dev, generator=self.generator)
        batch = self.images[index]
        if batch.dtype == torch.uint8:
            batch = batch.float().div_(127.5).sub_(1.0)
        if self.hflip:
            flip = torch.rand(self.batch, device=dev, generator=self.generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        return batch, (self.onehot[index] if self.onehot is not None else None)

    def next(self) -> torch.Tensor:
        """One batch of images (see :meth:`draw`)."""
        return self.draw()[0]
