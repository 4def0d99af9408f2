"""How ``generate`` scales over the GPUs of one machine, and that every seed's sample stays the same.

Runs ``torchrun --nproc_per_node=N -m explorer generate`` for each N in ``--gpus`` on the same seeds,
reads the samples back and compares them with the one-process run bit for bit::

    python3 benchmarks/generate_scaling.py --model emoji32-edm --seeds 0-8191 --batch 256 --gpus 1,2 --out DIR

Writes ``DIR/generate-scaling.json`` and ``.md``. Times are the manifest's (from the first barrier
after the model is loaded to the last one: graph capture included, process start-up not).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.commands.generate import MANIFEST, read_samples  # noqa: E402


def run_generate(args: argparse.Namespace, procs: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           "-m", "explorer", "generate", "--model", args.model, "--seeds", args.seeds, "--batch", str(args.batch),
           "--steps", str(args.steps), "--solver", args.solver, "--precision", args.precision, "--out", str(out)]
    if args.no_images:
        cmd.append("--no-images")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"gpus": procs, "error": done.stderr[-3000:]}
    info = json.loads((out / MANIFEST).read_text())
    return {"gpus": procs, "samples": info["count"], "seconds": info["seconds"],
            "samples_per_s": round(info["count"] / info["seconds"], 1), "wall_seconds_with_startup": round(wall, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="emoji32-edm")
    p.add_argument("--seeds", default="0-8191")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--solver", default="heun")
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--precision", default="float32")
    p.add_argument("--gpus", default="1,2")
    p.add_argument("--no-images", action="store_true")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, reference = [], None
    for procs in [int(n) for n in args.gpus.split(",")]:
        folder = out / f"generate-{procs}gpu"
        row = run_generate(args, procs, folder)
        if "error" not in row:
            seeds, samples = read_samples(folder)
            if reference is None:
                reference = (seeds, samples)
            row["identical_to_first"] = bool(np.array_equal(seeds, reference[0]) and np.array_equal(samples, reference[1]))
            first = next((r for r in rows if "samples_per_s" in r), row)
            row["speedup"] = round(row["samples_per_s"] / first["samples_per_s"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    import torch

    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "settings": vars(args), "runs": rows}
    (out / "generate-scaling.json").write_text(json.dumps(result, indent=1))
    lines = [f"### `generate` over GPUs ({result['device']})", "",
             f"{args.seeds} ({args.solver}, {args.steps} steps, batch {args.batch}, {args.precision}, "
             f"{'no images' if args.no_images else 'PNG + npz'})", "",
             "| GPUs | samples/s | speed-up | seconds | identical to 1 GPU |", "|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['gpus']} | failed | | | |")
        else:
            lines.append(f"| {r['gpus']} | {r['samples_per_s']} | {r['speedup']} | {r['seconds']} | {r['identical_to_first']} |")
    (out / "generate-scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
