"""Train the three shipped checkpoints side by side on one GPU, then score the Fashion ones.

This is the script that produced ``checkpoints/*.safetensors`` (see the model cards there).
It runs on the GPU machine from the repository root, in one call of at most 10 minutes::

    python3 benchmarks/train_checkpoints.py --data-dir .traindata --out runs --time-limit 450

``--data-dir`` holds ``fashion/`` (Debian's Fashion-MNIST idx files) and ``emoji32.npz`` (the
rendered Noto Color Emoji set, see ``explorer.train.datasets``): the GPU machine has neither
package. Each training process stops cleanly before ``--time-limit`` and exports its EMA
weights; afterwards FD (10k samples, Heun, 35 NFE) is measured for the Fashion models, and
with ``--collect DIR`` the checkpoints plus one archive of logs and grids are copied there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script, the package is imported from the checkout

# name, data, precond, extra arguments. Dropout is lower on Fashion-MNIST (60k images, short
# training: under-fitting is the risk) than on the 1.4k emoji (seen ~1000 times each).
RUNS = [
    ("fashion32-edm", "fashion", "edm", ["--arch-dropout", "0.05"]),
    ("emoji32-edm", "emoji", "edm", ["--arch-dropout", "0.1"]),
    ("fashion32-vp", "fashion", "vp", ["--arch-dropout", "0.05"]),
]


def launch(name: str, data: str, precond: str, extra: list[str], args: argparse.Namespace) -> subprocess.Popen:
    data_dir = str(Path(args.data_dir) / "fashion") if data == "fashion" else args.data_dir
    cmd = [
        sys.executable, "-m", "explorer.commands.train", "--data", data, "--data-dir", data_dir,
        "--precond", precond, "--name", name, "--out", str(Path(args.out) / name),
        "--batch", str(args.batch), "--lr", str(args.lr), "--lr-rampup-kimg", "100",
        "--kimg", str(args.kimg), "--grid-every-kimg", "1000", "--seed", str(args.seed),
        "--time-limit", str(args.time_limit), "--device", args.device, "--resume", *extra, *args.train_args,
    ]
    Path(args.out, name).mkdir(parents=True, exist_ok=True)
    log = open(Path(args.out) / f"{name}.stdout.txt", "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="4")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def score(args: argparse.Namespace) -> dict[str, float]:
    """FD of each Fashion checkpoint against the training split (classifier features)."""
    from explorer.core.config import RunConfig
    from explorer.models.checkpoint import load_checkpoint
    from explorer.train.frechet import fd_against_fashion
    from explorer.train.preview import batch_sampler

    results = {}
    for name, data, _, _ in RUNS:
        path = Path(args.out) / name / f"{name}.safetensors"
        if data != "fashion" or not path.is_file():
            continue
        start = time.time()
        denoiser = load_checkpoint(path, device=args.device)
        batch = min(1000, args.fd_num)
        config = RunConfig(process="edm", disc="edm", solver="heun", nfe=35, batch=batch, seed=0, device=args.device)
        results[name] = fd_against_fashion(batch_sampler(denoiser, config), num=args.fd_num, batch=batch,
                                           device=args.device)
        print(f"FD {name}: {results[name]:.4f} ({args.fd_num} samples, heun 35 NFE, {time.time() - start:.0f} s)", flush=True)
    return results


def collect(args: argparse.Namespace, summary: dict) -> None:
    """Checkpoints as files, everything else (logs, grids, configs) in one archive."""
    dest = Path(args.collect)
    dest.mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    with tarfile.open(dest / "training-logs.tar.gz", "w:gz") as tar:
        for path in sorted(Path(args.out).rglob("*")):
            if path.is_file() and path.suffix in (".txt", ".png", ".json"):
                tar.add(path, arcname=str(path.relative_to(args.out)))
    for name, *_ in RUNS:
        ckpt = Path(args.out) / name / f"{name}.safetensors"
        if ckpt.is_file():
            shutil.copy(ckpt, dest / ckpt.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=".traindata")
    parser.add_argument("--out", default="runs")
    parser.add_argument("--time-limit", type=float, default=450.0, help="seconds each training process may run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kimg", type=float, default=100_000, help="image budget (the time limit usually ends first)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fd-num", type=int, default=10_000)
    parser.add_argument("--collect", default=None, help="folder to copy checkpoints and a log archive into")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run with tiny settings")
    parser.add_argument("train_args", nargs="*", help="extra arguments for every training process (after --)")
    args = parser.parse_args()
    start = time.time()
    procs = {name: launch(name, data, pre, extra, args) for name, data, pre, extra in RUNS}
    codes = {name: proc.wait() for name, proc in procs.items()}
    print(f"training done in {time.time() - start:.0f} s, exit codes {codes}", flush=True)
    for name, *_ in RUNS:
        log = Path(args.out) / name / "log.txt"
        if log.is_file():
            print(f"--- {name}\n" + "".join(log.read_text().splitlines(keepends=True)[-3:]), flush=True)
    summary = {"exit_codes": codes, "train_wall_seconds": round(time.time() - start, 1)}
    if args.collect:  # first copy, in case scoring outlasts the call
        collect(args, summary)
    try:
        summary["fd"] = score(args)
    except Exception as err:  # keep the checkpoints even if scoring fails
        print(f"FD failed: {err!r}", flush=True)
    if args.collect:
        collect(args, summary)
    print(json.dumps(summary), flush=True)
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
