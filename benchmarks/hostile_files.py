"""Feed the hostile-file corpus (tests/hostile_corpus.py) to the CLI and measure every outcome.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/hostile_files.py [--json OUT.json] [--no-bombs]

Each file is opened by ``diffusion-explorer <command>`` in a forked child (the parent imports
torch once), under a 60 s wall-clock limit and an address-space limit of 8 GiB above the parent's.
An outcome is "ran" (exit 0), "clean error" (exit 2 and exactly one ``diffusion-explorer: error:``
line on stderr, no traceback) or "other" (anything else: traceback, crash, hang, other exit code).
Printed per reader: files tried and outcomes; then the slowest and the largest refusal (seconds,
peak RSS of the child). A sentinel file shows whether any payload ran.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_corpus import SENTINEL, build_corpus  # noqa: E402

LIMIT_S = 60.0
EXTRA_AS = 8 * 1024**3


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def run_case(argv: list[str], log: Path) -> tuple[int, float, int, str]:
    """(exit code or -signal, seconds, peak RSS bytes, stderr) of ``main(argv)`` in a forked child."""
    from explorer.cli import main

    limit = _vm_bytes() + EXTRA_AS
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            sys.stdout = open(os.devnull, "w")
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 99
        sys.stderr.flush()
        os._exit(code)
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - start > LIMIT_S:
            os.kill(pid, signal.SIGKILL)
            done, status, usage = os.wait4(pid, 0)
            break
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    return code, seconds, usage.ru_maxrss * 1024, log.read_text(errors="replace")


def _warm_up() -> None:
    """Import what the commands import lazily, once, so the children's times are the readers' own."""
    import importlib

    for name in ("explorer.cli", "explorer.models.loader", "explorer.models.checkpoint", "explorer.models.edm_import",
                 "explorer.models.diffusers_import", "explorer.export.comparison", "explorer.export.bundle",
                 "explorer.commands.convert", "diffusers", "matplotlib.pyplot"):
        importlib.import_module(name)
    from explorer.cli import build_parser

    build_parser()


def classify(code: int, stderr: str) -> str:
    if code == 0:
        return "ran"
    errors = [line for line in stderr.splitlines() if line.startswith("diffusion-explorer: error:")]
    if code == 2 and len(errors) == 1 and "Traceback" not in stderr:
        return "clean error"
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write every case's measurements here")
    parser.add_argument("--no-bombs", action="store_true", help="skip the 512 MB zip bomb (slow to build)")
    args = parser.parse_args(argv)
    _warm_up()

    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        folder = Path(tmp)
        cases = build_corpus(folder / "files", bombs=not args.no_bombs)
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rows = []
        for case in cases:
            code, seconds, rss, stderr = run_case(case.argv, folder / "stderr.txt")
            outcome = classify(code, stderr)
            rows.append(dict(reader=case.reader, name=case.name, expect=case.expect, outcome=outcome, code=code,
                             seconds=round(seconds, 3), peak_rss_mb=round(rss / 2**20, 1),
                             message=(stderr.strip().splitlines() or [""])[-1][:300]))
        executed = (folder / "files" / SENTINEL).exists()
    by_reader: dict[str, Counter] = defaultdict(Counter)
    for row in rows:
        by_reader[row["reader"]][row["outcome"]] += 1
    print(f"{'reader':<14}{'files':>6}{'ran':>6}{'clean error':>13}{'other':>7}")
    for reader, counts in by_reader.items():
        print(f"{reader:<14}{sum(counts.values()):>6}{counts['ran']:>6}{counts['clean error']:>13}{counts['other']:>7}")
    total = Counter(row["outcome"] for row in rows)
    print(f"{'all':<14}{len(rows):>6}{total['ran']:>6}{total['clean error']:>13}{total['other']:>7}")
    refusals = [r for r in rows if r["outcome"] == "clean error"]
    if refusals:
        slow = max(refusals, key=lambda r: r["seconds"])
        big = max(refusals, key=lambda r: r["peak_rss_mb"])
        print(f"slowest refusal: {slow['name']} {slow['seconds']:.2f} s, peak RSS {slow['peak_rss_mb']:.0f} MB")
        print(f"largest refusal: {big['name']} {big['peak_rss_mb']:.0f} MB peak RSS, {big['seconds']:.2f} s")
    print(f"parent RSS before forking (torch imported): {base_rss / 2**20:.0f} MB")
    wrong = [r for r in rows if r["outcome"] == "other" or (r["expect"] == "ran") != (r["outcome"] == "ran")]
    for row in wrong:
        print(f"UNEXPECTED {row['reader']}/{row['name']}: expected {row['expect']}, got {row['outcome']} "
              f"(exit {row['code']}): {row['message']}")
    print(f"payload executed: {'YES' if executed else 'no'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "executed": executed}, indent=1))
    return 1 if wrong or executed else 0


if __name__ == "__main__":
    raise SystemExit(main())
