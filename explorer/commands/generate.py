"""``diffusion-explorer generate``: many samples by seed, shared out over processes and GPUs.

Alone it uses one device; under ``torchrun`` every process takes a share of the seeds::

    torchrun --nproc_per_node=N -m explorer generate --model M --seeds 0-49999 --out DIR

The seeds are cut into batches of ``--batch`` consecutive seeds (a gap in the seed list starts
a new batch) in the same way whatever N is, and batch i goes to rank i mod N. A sample depends
only on its seed and its batch, so each seed's sample is the same for any number of processes.
Processes talk through ``torch.distributed``: NCCL between GPUs, gloo on CPUs.

DIR receives ``images/<seed // 1000>/<seed>.png`` (image denoisers, unless ``--no-images``),
one ``shard-<rank>-of-<N>.npz`` per process (``seeds`` int64 ``[n]``, ``samples`` float32
``[n, *shape]`` in data space, unclipped) and ``generate.json`` (what was run, the shards).
:func:`read_samples` reads them back, sorted by seed (the interface other tools use).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

from explorer.commands.common import add_model_argument, add_run_arguments, config_from_args, parse_seeds
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.fast import PRECISIONS, FastOptions
from explorer.core.streaming import HostCopy, HostStreamer

MANIFEST = "generate.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="draw many samples by seed (one device, or sharded under torchrun)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_argument(p)
    add_run_arguments(p)
    p.add_argument("--seeds", required=True, help="seeds to draw, e.g. 0-49999 or 1,5,9 (one sample each)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--no-images", action="store_true", help="write only the .npz shards")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="network precision on the CUDA fast path (bfloat16: autocast, preconditioning stays float32)")
    p.add_argument("--channels-last", action="store_true", help="channels-last network on the fast path")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network under the CUDA graph (tens of seconds once per batch size; "
                        "pays off for long runs, see benchmarks/results)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------ sharding

def seed_batches(seeds: Sequence[int], batch: int) -> list[list[int]]:
    """Consecutive seeds in batches of at most ``batch``; a gap in the seeds starts a new batch.

    Independent of the number of processes, so every seed is drawn in the same batch (and so
    with the same kernels) however the work is shared.
    """
    if batch < 1:
        raise ValueError(f"The batch size must be at least 1 (got {batch}).")
    if len(set(seeds)) != len(seeds):
        raise ValueError("Each seed may be asked for once; the seed list repeats some.")
    batches: list[list[int]] = []
    current: list[int] = []
    for seed in seeds:
        if current and (len(current) == batch or seed != current[-1] + 1):
            batches.append(current)
            current = []
        current.append(int(seed))
    if current:
        batches.append(current)
    return batches


def rank_batches(batches: Sequence[list[int]], rank: int, world: int) -> list[list[int]]:
    """Batch i goes to rank i mod world."""
    return list(batches[rank::world])


def shard_name(rank: int, world: int) -> str:
    return f"shard-{rank:05d}-of-{world:05d}.npz"


# ------------------------------------------------------------------------------ sampling

def sample_seeds(denoiser: Denoiser, config: RunConfig, seeds: Sequence[int],
                 fast: Optional[FastOptions] = None) -> torch.Tensor:
    """Final samples (data space, on the run's device) of consecutive ``seeds``, one batch.

    The same as ``sample --seed seeds[0] --batch len(seeds)``: sample k uses seed k for its
    latents and any solver noise.
    """
    from explorer.core.sampling import final_samples

    if list(seeds) != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError("sample_seeds draws consecutive seeds only.")
    return final_samples(denoiser, config.replace(seed=int(seeds[0]), batch=len(seeds)), fast=fast)


class _Writer:
    """Turns finished batches into PNG files and shard rows on helper threads.

    Each batch arrives as a :class:`HostCopy` still in flight; the helper waits for that copy
    alone, so the sampling thread goes straight on to the next batch.
    """

    def __init__(self, out: Path, denoiser: Denoiser, images: bool, threads: int = 4) -> None:
        self.out, self.images = out, images and denoiser.is_image
        self.shape = tuple(denoiser.shape)
        self.data_range = denoiser.data_range
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.jobs: list[Future] = []

    def add(self, seeds: Sequence[int], copy: HostCopy) -> None:
        self.jobs.append(self.pool.submit(self._write, list(seeds), copy))

    def _write(self, seeds: list[int], copy: HostCopy) -> tuple[list[int], np.ndarray]:
        samples = copy.wait()[0].to(torch.float32).numpy().copy()  # leaves the pinned buffer
        if self.images:
            from explorer.export.images import to_pil, to_uint8

            pixels = to_uint8(torch.from_numpy(samples), self.data_range)
            for seed, image in zip(seeds, pixels):
                folder = self.out / "images" / f"{seed // 1000:06d}"
                folder.mkdir(parents=True, exist_ok=True)
                to_pil(image).save(folder / f"{seed:06d}.png")
        return seeds, samples

    def finish(self, path: Path) -> int:
        seeds, samples = [], []
        for job in self.jobs:
            s, x = job.result()
            seeds.extend(s)
            samples.append(x)
        self.pool.shutdown()
        arrays = np.concatenate(samples) if samples else np.zeros((0, *self.shape), np.float32)
        with open(path, "wb") as f:
            np.savez(f, seeds=np.asarray(seeds, dtype=np.int64), samples=arrays)
        return len(seeds)


def generate(denoiser: Denoiser, config: RunConfig, seeds: Sequence[int], out: Path, rank: int = 0, world: int = 1,
             images: bool = True, fast: Optional[FastOptions] = None) -> int:
    """Draw this rank's share of ``seeds`` and write its images and shard; returns its count."""
    from explorer.core.sampling import resolve_device

    out.mkdir(parents=True, exist_ok=True)
    mine = rank_batches(seed_batches(seeds, config.batch), rank, world)
    streamer = HostStreamer(resolve_device(config.device))
    writer = _Writer(out, denoiser, images)
    try:
        for batch in mine:
            writer.add(batch, streamer.submit([sample_seeds(denoiser, config, batch, fast)]))
    finally:
        count = writer.finish(out / shard_name(rank, world))
    return count


def read_samples(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(seeds [n], samples [n, *shape])`` of a ``generate`` folder, sorted by seed.

    Raises ValueError when a shard is missing or a seed appears twice.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ValueError(f"{folder} holds no {MANIFEST}; was it written by `diffusion-explorer generate`?")
    info = json.loads(manifest.read_text())
    seeds, samples = [], []
    for name in info["shards"]:
        path = folder / name
        if not path.is_file():
            raise ValueError(f"Shard {name} listed in {manifest} is missing.")
        with np.load(path, allow_pickle=False) as data:
            if len(data["seeds"]):
                seeds.append(data["seeds"])
                samples.append(data["samples"])
    if not seeds:
        raise ValueError(f"{folder} holds no samples.")
    all_seeds, all_samples = np.concatenate(seeds), np.concatenate(samples)
    order = np.argsort(all_seeds, kind="stable")
    all_seeds, all_samples = all_seeds[order], all_samples[order]
    if len(np.unique(all_seeds)) != len(all_seeds):
        raise ValueError(f"{folder} holds some seeds more than once.")
    return all_seeds, all_samples


def iter_sample_batches(folder: str | os.PathLike, batch: int = 1000) -> Iterator[torch.Tensor]:
    """The samples of a ``generate`` folder in batches (e.g. for feature extraction)."""
    _, samples = read_samples(folder)
    for start in range(0, len(samples), batch):
        yield torch.from_numpy(samples[start : start + batch])


# ------------------------------------------------------------------------------ processes

def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _start_group(device: str, local_rank: int) -> None:
    import torch.distributed as dist

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")


def run(args: argparse.Namespace) -> int:
    from explorer.models.loader import load_denoiser

    rank, world, local_rank = _distributed()
    config = config_from_args(args)
    if args.seed != RunConfig().seed:
        raise ValueError("generate takes its seeds from --seeds, not --seed.")
    seeds = parse_seeds(args.seeds)
    fast = FastOptions(precision=args.precision, channels_last=args.channels_last, compile=args.compile)
    out = Path(args.out)
    if world > 1:
        _start_group(config.device, local_rank)
        if config.device == "auto":
            config = config.replace(device="cuda" if torch.cuda.is_available() else "cpu")
    try:
        denoiser = load_denoiser(args.model)
        _barrier(world)
        start = time.perf_counter()
        count = generate(denoiser, config, seeds, out, rank, world, images=not args.no_images, fast=fast)
        _barrier(world)
        seconds = time.perf_counter() - start
        if rank == 0:
            _write_manifest(out, args, config, seeds, world, denoiser, seconds, fast)
            print(f"generate: {len(seeds)} samples on {world} process(es) in {seconds:.2f} s "
                  f"({len(seeds) / seconds:.1f} samples/s), {out}", file=sys.stderr)
        else:
            print(f"generate: rank {rank} drew {count} samples", file=sys.stderr)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _write_manifest(out: Path, args: argparse.Namespace, config: RunConfig, seeds: Sequence[int], world: int,
                    denoiser: Denoiser, seconds: float, fast: FastOptions) -> None:
    info: dict[str, Any] = {
        "format": "explorer-generate/1",
        "model": args.model,
        "config": json.loads(config.to_json()),
        "fast": {"enabled": config.fast, "precision": fast.precision, "channels_last": fast.channels_last,
                 "compile": fast.compile},
        "seeds": args.seeds,
        "count": len(seeds),
        "shape": list(denoiser.shape),
        "world_size": world,
        "shards": [shard_name(r, world) for r in range(world)],
        "seconds": round(seconds, 3),
    }
    (out / MANIFEST).write_text(json.dumps(info, indent=2))
