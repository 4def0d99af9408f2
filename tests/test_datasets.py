"""Data sets: shapes, ranges, labels, caching, and readable errors for bad input."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.train import datasets as ds

needs_fashion = pytest.mark.skipif(
    not (ds.FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(), reason="dataset-fashion-mnist not installed"
)
needs_emoji = pytest.mark.skipif(not ds.EMOJI_FONT.is_file(), reason="fonts-noto-color-emoji not installed")


@needs_fashion
def test_fashion_splits_shapes_ranges_labels():
    train, test = ds.load_fashion("train"), ds.load_fashion("test")
    assert tuple(train.images.shape) == (60000, 1, 32, 32)
    assert tuple(test.images.shape) == (10000, 1, 32, 32)
    for split in (train, test):
        assert split.images.dtype == torch.float32
        assert float(split.images.min()) == -1.0 and float(split.images.max()) == 1.0
        assert sorted(torch.unique(split.labels).tolist()) == list(range(10))
        # the 2-pixel padding is background (-1) everywhere
        border = torch.cat([split.images[..., :2, :].flatten(), split.images[..., -2:, :].flatten(),
                            split.images[..., :, :2].flatten(), split.images[..., :, -2:].flatten()])
        assert bool((border == -1).all())
    assert ds.load_dataset("fashion").name == "fashion-mnist-train"


def test_read_idx_roundtrip_and_rejects_garbage(tmp_path: Path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = b"\x00\x00\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(tmp_path / "x-idx3-ubyte.gz", "wb") as f:
        f.write(header + array.tobytes())
    np.testing.assert_array_equal(ds.read_idx(tmp_path / "x-idx3-ubyte.gz"), array)
    (tmp_path / "bad").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="idx"):
        ds.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(header + array.tobytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        ds.read_idx(tmp_path / "short")


def test_missing_fashion_files_say_where(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        ds.load_fashion("train", tmp_path)
    with pytest.raises(ValueError, match="splits"):
        ds.load_fashion("validation", tmp_path)


@needs_emoji
def test_emoji_render_cache_and_range(tmp_path: Path):
    code_points = ds.font_code_points(ds.EMOJI_FONT)
    assert 0x1F600 in code_points and len(code_points) > 1000
    first = ds.load_emoji(tmp_path)
    assert (tmp_path / ds.EMOJI_CACHE_NAME).is_file()
    n, c, h, w = first.images.shape
    assert (c, h, w) == (3, 32, 32) and n > 1000 and first.hflip
    assert float(first.images.min()) >= -1.0 and float(first.images.max()) <= 1.0
    # the corners are the white background, the centres are not all background
    assert bool((first.images[:, :, 0, 0] > 0.9).float().mean() > 0.7)
    assert bool(((first.images[:, :, 16, 16] - 1).abs().amax(1) > 0.1).float().mean() > 0.5)
    again = ds.load_emoji(tmp_path)  # from the cache, identical
    assert torch.equal(first.images, again.images)


def test_folder_of_images(tmp_path: Path):
    from PIL import Image

    for i, colour in enumerate([(0, 0, 0), (255, 255, 255), (255, 0, 0)]):
        Image.new("RGB", (20, 20), colour).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    data = ds.load_dataset(str(tmp_path), size=16)
    assert tuple(data.images.shape) == (3, 3, 16, 16)
    assert torch.allclose(data.images[0], torch.full((3, 16, 16), -1.0))
    assert torch.allclose(data.images[2, 0], torch.ones(16, 16)) and torch.allclose(data.images[2, 1], -torch.ones(16, 16))


def test_empty_or_unreadable_folder_is_a_value_error(tmp_path: Path):
    with pytest.raises(ValueError, match="no image files"):
        ds.load_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Cannot read"):
        ds.load_folder(tmp_path)
    with pytest.raises(ValueError, match="--data"):
        ds.load_dataset(str(tmp_path / "missing"))


def test_arrays_in_any_layout(tmp_path: Path):
    nhwc = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", nhwc)
    data = ds.load_dataset(str(tmp_path / "a.npy"))
    assert tuple(data.images.shape) == (5, 3, 8, 8)
    torch.testing.assert_close(data.images, torch.from_numpy(nhwc).permute(0, 3, 1, 2).float() / 127.5 - 1)
    np.savez(tmp_path / "b.npz", images=np.full((4, 1, 8, 8), 0.5, np.float32), labels=np.arange(4))
    data = ds.load_dataset(str(tmp_path / "b.npz"))
    assert torch.allclose(data.images, torch.zeros(4, 1, 8, 8)) and data.labels.tolist() == [0, 1, 2, 3]
    np.save(tmp_path / "c.npy", np.full((2, 1, 4, 4), 3.0, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\] or \[-1, 1\]"):
        ds.load_dataset(str(tmp_path / "c.npy"))
    np.save(tmp_path / "d.npy", np.zeros((2, 5, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        ds.load_dataset(str(tmp_path / "d.npy"))


def test_batch_stream_is_reproducible_and_flips():
    images = torch.arange(4 * 2 * 2, dtype=torch.float32).reshape(4, 1, 2, 2)
    data = ds.ImageSet(images=images, hflip=True)
    draws = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(3)
        stream = ds.BatchStream(data, 64, torch.device("cpu"), gen)
        draws.append(stream.next())
    assert torch.equal(draws[0], draws[1]) and draws[0].shape == (64, 1, 2, 2)
    originals = {tuple(img.flatten().tolist()) for img in images}
    mirrored = {tuple(img.flip(-1).flatten().tolist()) for img in images}
    seen = {tuple(img.flatten().tolist()) for img in draws[0]}
    assert seen <= originals | mirrored and seen & mirrored - originals  # some were mirrored
