"""FD (10,000 samples, classifier features, against the Fashion-MNIST training split) of one
Fashion checkpoint at a few (solver, NFE) points: the quick check used to pick the app's default.

    python3 benchmarks/fd_points.py --model runs/fashion32-edm/fashion32-edm.safetensors \
        --points dpm-solver++2m:10,dpm-solver++2m:12,dpm-solver++2m:15,heun:15,euler:35

``benchmarks/fd_sweep.py`` makes the full table; this one is for a minute of GPU time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explorer.core.config import RunConfig  # noqa: E402
from explorer.models.checkpoint import load_checkpoint  # noqa: E402
from explorer.train.frechet import fd_against_fashion  # noqa: E402
from explorer.train.preview import batch_sampler  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="checkpoints/fashion32-edm.safetensors")
    p.add_argument("--points", default="dpm-solver++2m:12,heun:35", help="solver:NFE, comma-separated")
    p.add_argument("--num", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    denoiser = load_checkpoint(args.model, device=args.device)
    for point in args.points.split(","):
        solver, nfe = point.split(":")
        t0 = time.time()
        config = RunConfig(process="edm", disc="edm", solver=solver, nfe=int(nfe), batch=args.batch, seed=0,
                           device=args.device)
        fd = fd_against_fashion(batch_sampler(denoiser, config), num=args.num, batch=args.batch, device=args.device)
        print(f"{solver} {nfe} {fd:.4f} {time.time() - t0:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
