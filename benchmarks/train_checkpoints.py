"""Train the shipped checkpoints on one GPU over several short device calls, and bring them back.

The GPU machine lends at most 10 minutes per command, returns at most 8 files of 16 MB per
command and has neither Fashion-MNIST nor the emoji font. So the work is split in modes, each
run from the repository root (``python3 benchmarks/train_checkpoints.py MODE ...``):

``pack``     (here, on the CPU) write the training sets as uint8 ``.npz`` into ``runs/data/``
             (about 35 MB together), which the GPU call carries.
``bench``    images/s of the plain loop (today's: batch 256, eager) against the fast path
             (uint8 data on the GPU, channels-last, bf16, fused Adam, big batch, torch.compile),
             each measured for ``--seconds`` after its warm-up; JSON into ``--dest``.
``start``    launch the training of fashion32-edm, emoji32-edm and fashion32-cond as detached
             background processes (``setsid nohup``) that outlive the call; each stops by itself
             before ``--time-limit`` seconds, saving its state, the final EMA checkpoint and,
             at ``--early-fraction`` of the time limit, an early EMA snapshot for autoguidance.
``status``   progress of each run (``--wait S`` keeps watching for up to S seconds, which also
             keeps the machine busy until the next call).
``collect``  copy selected files into ``--dest``: ``final``, ``early``, ``logs`` (one archive of
             logs, configs, sample grids, benchmark JSON) and ``state:NAME`` (the resumable state
             of one run, five files of at most 16 MB); at most 8 files per call.
``score``    FD (Heun, 35 NFE) of the final Fashion checkpoints, as far as time allows.
``restore``  put state files that ``collect --what state:NAME`` brought back (``--from DIR``) into
             ``runs/NAME/state/`` again, so that a fresh machine's ``start`` resumes the run.

``--device cpu`` with ``--train-args`` for a tiny net turns every mode into a cheap dry run
(the test suite does this, in-process with ``--foreground``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script, the package is imported from the checkout

DATA_FILES = {"fashion": "fashion-mnist-train.npz", "emoji": "emoji32.npz"}
# name -> data and the arguments that differ. Dropout is lower on Fashion-MNIST (60k images,
# under-fitting is the risk) than on the 1.4k emoji (each seen thousands of times). All three
# use the default 3.4 M-parameter SongUNet, so the CPU default run's speed is unchanged.
RUNS = {
    "fashion32-edm": ("fashion", ["--precond", "edm", "--arch-dropout", "0.05"]),
    "emoji32-edm": ("emoji", ["--precond", "edm", "--arch-dropout", "0.1"]),
    "fashion32-cond": ("fashion", ["--precond", "edm", "--arch-dropout", "0.05", "--cond", "--label-dropout", "0.1"]),
}
# benchmark configurations: (batch, fast, compile)
BENCH = {
    "plain": (256, False, False),
    "fast": (1024, True, False),
    "compile": (1024, True, True),
    "compile2048": (2048, True, True),
}
MAX_FILES, MAX_BYTES, MAX_TOTAL = 8, 16 * 2**20, 64 * 2**20  # what one device call brings back
STATE_ROLES = ("net", "ema", "adam-m", "adam-v", "misc")


# ----------------------------------------------------------------------------- pack


def pack(args: argparse.Namespace) -> int:
    """Write the training sets the runs need as uint8 .npz files (run where the data exist)."""
    from explorer.train.datasets import load_dataset, save_packed

    folder = Path(args.data)
    total = 0
    for spec, name in DATA_FILES.items():
        path = save_packed(load_dataset(spec), folder / name)
        total += path.stat().st_size
        print(f"packed {spec} -> {path} ({path.stat().st_size / 2**20:.1f} MB)")
    print(f"total {total / 2**20:.1f} MB")
    return 0


# ----------------------------------------------------------------------------- bench


def bench_one(args: argparse.Namespace) -> dict:
    """Images/s of one configuration on the packed Fashion set, after its warm-up."""
    import torch

    from explorer.train.datasets import load_dataset
    from explorer.train.loop import DEFAULT_ARCH, TrainConfig, Trainer

    batch, fast, compiled = BENCH[args.config]
    arch = json.loads(args.arch) if args.arch else dict(DEFAULT_ARCH)
    config = TrainConfig(data="fashion", arch=arch, batch=args.batch or batch, fast=fast, compile=compiled, name="bench")
    data = load_dataset(str(Path(args.data) / DATA_FILES["fashion"]))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp), device=args.device, data=data, log=lambda s: print(s, flush=True))
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        t0 = time.time()
        for _ in range(args.warmup):
            trainer.step()
        sync()
        warmup = time.time() - t0
        steps, t0 = 0, time.time()
        while time.time() - t0 < args.seconds or steps < 2:
            losses = [trainer.step() for _ in range(config.log_every_steps)]
            steps += len(losses)
            float(torch.stack(losses).mean())  # the fast loop's one sync per K steps
        sync()
        seconds = time.time() - t0
    result = {"config": args.config, "batch": config.batch, "fast": fast, "compile": compiled,
              "compiled_ok": trainer.forward is not trainer.net, "images_per_s": round(steps * config.batch / seconds, 1),
              "steps": steps, "seconds": round(seconds, 2), "warmup_s": round(warmup, 1),
              "device": trainer._device_name(), "torch": torch.__version__}
    if trainer.device.type == "cuda":
        result["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return result


def bench(args: argparse.Namespace) -> int:
    """Each configuration in fresh processes (``--parallel`` of them at once, as training runs)."""
    results = []
    for name in args.configs.split(","):
        if name not in BENCH:
            raise SystemExit(f"unknown bench config {name!r}; choose from {', '.join(BENCH)}")
        cmd = [sys.executable, __file__, "bench-one", "--config", name, "--seconds", str(args.seconds),
               "--warmup", str(args.warmup), "--data", args.data, "--device", args.device]
        cmd += ["--arch", args.arch] if args.arch else []
        cmd += ["--batch", str(args.batch)] if args.batch else []
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(args.parallel)]
        runs = [_last_json(p.communicate()[0]) for p in procs]
        total = sum(r.get("images_per_s", 0.0) for r in runs)
        entry = {"config": name, "parallel": args.parallel, "total_images_per_s": round(total, 1), "runs": runs}
        print(json.dumps(entry), flush=True)
        results.append(entry)
    if results and "plain" in args.configs.split(","):
        base = next(r["total_images_per_s"] for r in results if r["config"] == "plain")
        for r in results:
            r["speedup_vs_plain"] = round(r["total_images_per_s"] / max(base, 1e-9), 2)
    out = Path(args.dest) / f"bench-x{args.parallel}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    shutil.copy(out, Path(args.out) / out.name)  # so that collect's log archive holds it too
    print(f"wrote {out}")
    return 0


def _last_json(text: str) -> dict:
    """A bench-one process's result line, or what it said instead when it failed."""
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": text[-2000:]}


# ----------------------------------------------------------------------------- start


def train_argv(name: str, args: argparse.Namespace) -> list[str]:
    """The ``diffusion-explorer train`` arguments of one run."""
    data, extra = RUNS[name]
    argv = ["--data", str(Path(args.data) / DATA_FILES[data]), "--name", name, "--out", str(Path(args.out) / name),
            "--batch", str(args.batch), "--lr", str(args.lr), "--lr-rampup-kimg", str(args.lr_rampup_kimg),
            "--kimg", str(args.kimg), "--ema-halflife-kimg", str(args.ema_halflife_kimg),
            "--grid-every-kimg", str(args.grid_every_kimg), "--seed", str(args.seed),
            "--time-limit", str(args.time_limit), "--early-minutes", f"{early_minutes(args):.4f}",
            "--device", args.device, "--resume", "--fast", *extra]
    argv += ["--compile"] if args.compile else []
    return argv + shlex.split(args.train_args)


def early_minutes(args: argparse.Namespace) -> float:
    """When the early snapshot is taken: ``--early-minutes``, else a fraction of the time limit."""
    return args.early_minutes if args.early_minutes is not None else args.early_fraction * args.time_limit / 60


def start(args: argparse.Namespace) -> int:
    """Launch the runs detached (or, with ``--foreground``, one after another in this process)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.runs.split(","):
        if name not in RUNS:
            raise SystemExit(f"unknown run {name!r}; choose from {', '.join(RUNS)}")
        argv = train_argv(name, args)
        if args.foreground:
            from explorer.commands.train import main as train_main

            code = train_main(argv)
            print(f"{name}: exit {code}", flush=True)
            if code:
                return code
            continue
        running = training_pids(name)
        if running:
            print(f"{name}: already running (pid {running[0]})")
            continue
        # setsid (not forking: this child is no group leader) + nohup: the run outlives the call
        cmd = ["setsid", "nohup", sys.executable, "-m", "explorer.commands.train", *argv]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="4", PYTHONPATH=str(REPO))
        with open(out / f"{name}.stdout.txt", "a") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=REPO)
        print(f"{name}: started pid {proc.pid}: {shlex.join(cmd)}", flush=True)
    return 0


# ----------------------------------------------------------------------------- status


def training_pids(name: str) -> list[int]:
    """Live (non-zombie) training processes of run ``name``, found by their command line."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            continue
        if b"explorer.commands.train" in argv and b"--name" in argv and not zombie:
            if argv[argv.index(b"--name") + 1] == name.encode():
                pids.append(int(proc.name))
    return pids


def run_status(out: Path, name: str) -> dict:
    folder = out / name
    log = folder / "log.txt"
    lines = log.read_text().splitlines() if log.is_file() else []
    files = {p.name: p.stat().st_size for p in (folder / f"{name}.safetensors", folder / f"{name}-early.safetensors")
             if p.is_file()}
    return {"name": name, "running": bool(training_pids(name)),
            "last": lines[-1] if lines else "(no log yet)", "stopped": any(" stopped (" in s for s in lines[-3:]),
            "files": files}


def status(args: argparse.Namespace) -> int:
    out = Path(args.out)
    names = args.runs.split(",")
    end = time.time() + args.wait
    while True:
        states = [run_status(out, n) for n in names]
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        for s in states:
            files = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in s["files"].items()) or "no checkpoint yet"
            print(f"[{stamp}] {s['name']}: {'running' if s['running'] else 'not running'} | {s['last']} | {files}",
                  flush=True)
        if shutil.which("nvidia-smi"):
            subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used,memory.total", "--format=csv,noheader"],
                           check=False)
        if not any(s["running"] for s in states) or time.time() + args.every > end:
            break
        time.sleep(args.every)
    if not any(s["running"] for s in states):
        for name in names:
            tail = out / f"{name}.stdout.txt"
            if tail.is_file() and "Traceback" in tail.read_text():
                print(f"--- {name}.stdout.txt (ends with an error)\n" + tail.read_text()[-3000:], flush=True)
    return 0


# ----------------------------------------------------------------------------- collect


def logs_archive(out: Path, dest: Path) -> Path:
    """Logs, configs, sample grids and benchmark JSON of every run, in one small archive."""
    path = dest / "training-logs.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for item in sorted(out.rglob("*")):
            rel = item.relative_to(out)
            if item.is_file() and item.suffix in (".txt", ".png", ".json") and rel.parts[0] != "data":
                tar.add(item, arcname=str(rel))
    return path


def selected_files(out: Path, what: str, runs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in what.split(","):
        if item == "final":
            files += [out / n / f"{n}.safetensors" for n in runs]
        elif item == "early":
            files += [out / n / f"{n}-early.safetensors" for n in runs]
        elif item.startswith("state:"):
            files += sorted((out / item.split(":", 1)[1] / "state").glob("*.safetensors"))
        elif item != "logs":
            raise SystemExit(f"--what takes final, early, logs and state:NAME, not {item!r}")
    return files


def collect(args: argparse.Namespace) -> int:
    """Copy the selected files into ``--dest``: at most 8 files of 16 MB, 64 MB together (the device's return limits)."""
    out, dest = Path(args.out), Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = selected_files(out, args.what, args.runs.split(","))
    copied = []
    for path in files:
        if not path.is_file():
            print(f"missing: {path}")
        elif path.stat().st_size > MAX_BYTES:
            print(f"too big to come back ({path.stat().st_size / 2**20:.1f} MB): {path}")
        elif len(copied) >= MAX_FILES - ("logs" in args.what.split(",")):
            print(f"left out (8 files per call): {path}")
        elif sum(f.stat().st_size for f in copied) + path.stat().st_size > MAX_TOTAL - 2**20 * ("logs" in args.what.split(",")):
            print(f"left out (64 MB per call; collect it with another --what): {path}")
        else:
            target = dest / (f"{path.parent.parent.name}-{path.name}" if path.parent.name == "state" else path.name)
            shutil.copy(path, target)
            copied.append(target)
    if "logs" in args.what.split(","):
        copied.append(logs_archive(out, dest))
    for path in copied:
        print(f"collected {path.name} ({path.stat().st_size / 2**20:.2f} MB)")
    return 0


def restore(args: argparse.Namespace) -> int:
    """Move ``NAME-<role>-<i>.safetensors`` files from ``--from`` into ``runs/NAME/state/``."""
    source = Path(args.source)
    moved = 0
    for name in args.runs.split(","):
        files = sorted(source.glob(f"{name}-*-[0-9]*.safetensors"))
        files = [f for f in files if f.name[len(name) + 1:].rsplit("-", 1)[0] in STATE_ROLES]
        if not files:
            continue
        state = Path(args.out) / name / "state"
        state.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, state / f.name[len(name) + 1:])
            moved += 1
        print(f"{name}: restored {len(files)} state files into {state}")
    if not moved:
        raise SystemExit(f"no state files (NAME-role-i.safetensors) for {args.runs} in {source}")
    return 0


# ----------------------------------------------------------------------------- score


def score(args: argparse.Namespace) -> int:
    """FD of each final Fashion checkpoint against the training split (classifier features)."""
    from explorer.core.config import RunConfig
    from explorer.models.checkpoint import load_checkpoint
    from explorer.train.frechet import fd_against_fashion
    from explorer.train.preview import batch_sampler

    results = {}
    for name in args.runs.split(","):
        path = Path(args.out) / name / f"{name}.safetensors"
        if RUNS[name][0] != "fashion" or not path.is_file():
            continue
        t0 = time.time()
        denoiser = load_checkpoint(path, device=args.device)
        batch = min(1000, args.fd_num)
        config = RunConfig(process="edm", disc="edm", solver="heun", nfe=35, batch=batch, seed=0, device=args.device)
        results[name] = fd_against_fashion(batch_sampler(denoiser, config), num=args.fd_num, batch=batch,
                                           device=args.device)
        print(f"FD {name}: {results[name]:.4f} ({args.fd_num} samples, heun 35 NFE, {time.time() - t0:.0f} s)", flush=True)
    Path(args.out, "fd.json").write_text(json.dumps(results, indent=2))
    return 0


# ----------------------------------------------------------------------------- arguments


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["pack", "bench", "bench-one", "start", "status", "collect", "score", "restore"])
    p.add_argument("--out", default="runs", help="folder of the runs (ignored by git)")
    p.add_argument("--data", default="runs/data", help="folder of the packed data sets")
    p.add_argument("--dest", default=os.environ.get("OUT", "out"), help="where bench/collect write ($OUT)")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run")
    p.add_argument("--runs", default=",".join(RUNS), help="which runs (comma-separated)")
    # training
    p.add_argument("--time-limit", type=float, default=1140.0, help="seconds each training process may run")
    p.add_argument("--early-fraction", type=float, default=0.125, help="early EMA snapshot at this part of the time")
    p.add_argument("--early-minutes", type=float, default=None, help="early snapshot after this much training")
    p.add_argument("--batch", type=int, default=None, help="batch (training default 1024; bench: per config)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-rampup-kimg", type=float, default=200.0)
    p.add_argument("--kimg", type=float, default=200_000, help="image budget (the time limit usually ends first)")
    p.add_argument("--ema-halflife-kimg", type=float, default=500.0)
    p.add_argument("--grid-every-kimg", type=float, default=2000.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="train eagerly")
    p.add_argument("--train-args", default="", help="extra arguments for every training run (one string)")
    p.add_argument("--foreground", action="store_true", help="train in this process, one run after another")
    # bench
    p.add_argument("--configs", default="plain,fast,compile", help=f"bench configurations: {', '.join(BENCH)}")
    p.add_argument("--config", default="plain", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=20.0, help="bench: measured seconds per configuration")
    p.add_argument("--warmup", type=int, default=30, help="bench: steps before measuring (compilation included)")
    p.add_argument("--parallel", type=int, default=1, help="bench: processes at once per configuration")
    p.add_argument("--arch", default=None, help="bench: the net as JSON (default: the shipped 3.4 M one)")
    # status / collect / score
    p.add_argument("--wait", type=float, default=0.0, help="status: keep watching this many seconds")
    p.add_argument("--every", type=float, default=60.0, help="status: seconds between reports")
    p.add_argument("--what", default="final,early,logs", help="collect: final, early, logs, state:NAME")
    p.add_argument("--fd-num", type=int, default=10_000)
    p.add_argument("--from", dest="source", default="collected", help="restore: folder with collected state files")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.mode == "bench-one":
        print(json.dumps(bench_one(args)), flush=True)
        return 0
    if args.mode == "start" and args.batch is None:
        args.batch = 1024
    return {"pack": pack, "bench": bench, "start": start, "status": status, "collect": collect,
            "score": score, "restore": restore}[args.mode](args)


if __name__ == "__main__":
    raise SystemExit(main())
