"""Quality against NFE: Fréchet distance of a shipped Fashion model for several solvers.

For each solver and NFE budget, draws ``--num`` samples (seeds 0…num−1) and computes the
FD of the Fashion classifier's penultimate features to the training split. The floor is
the test split against the training split. Writes JSON and a markdown table.

    python benchmarks/fd_sweep.py --model fashion32-edm --num 10000 --out benchmarks/results

A solver may carry its own options after colons, e.g. ``unipc-3:variant=bh1``; the
issue-#11 comparison (the solvers after DPM-Solver++ at very low NFE) is

    python benchmarks/fd_sweep.py --preset low-nfe --num 10000 --out "$OUT"
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from explorer.core.config import RunConfig
from explorer.core.solvers import get_solver
from explorer.core.sampling import resolve_device
from explorer.models.loader import load_denoiser
from explorer.train.frechet import (
    extract_features, fd_against_fashion, feature_statistics, frechet_distance, reference_statistics, tensor_batches,
)
from explorer.train.preview import batch_sampler


def floor_fd(device: torch.device) -> float:
    from explorer.train.datasets import load_fashion
    from explorer.train.frechet import DEFAULT_CLASSIFIER, load_classifier

    model, _ = load_classifier(DEFAULT_CLASSIFIER, device=str(device))
    mu_ref, cov_ref = reference_statistics(model, device=device)
    feats = extract_features(model, tensor_batches(load_fashion("test").images), device)
    return frechet_distance(*feature_statistics(feats), mu_ref, cov_ref)


PRESETS = {
    "low-nfe": ("euler,heun,dpm-solver++2m,dpm-solver++3m,unipc-3:variant=bh1,unipc-3:variant=bh2,deis-3,ipndm,ipndm-v",
                "3,4,5,6,8,10"),
}


def solver_spec(text: str) -> tuple[str, dict]:
    """'unipc-3:variant=bh1' → ('unipc-3', {'variant': 'bh1'}), values parsed by the solver's declarations."""
    name, *pairs = text.strip().split(":")
    info = get_solver(name)
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        options[key] = info.option(key).parse(value)
    return name, options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fashion32-edm")
    p.add_argument("--solvers", default="euler,heun,dpm-solver-3,dpm-solver++2m", help="name[:option=value…],…")
    p.add_argument("--nfe", default="5,10,20,35")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named solver list and NFE budgets (overrides both)")
    p.add_argument("--num", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--reference-rtol", type=float, default=1e-4)
    p.add_argument("--only-reference", action="store_true", help="measure the reference solver alone")
    p.add_argument("--no-reference", action="store_true", help="skip the reference solver (RK45 takes minutes on 10k samples)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    if args.preset:
        args.solvers, args.nfe = PRESETS[args.preset]
    device = resolve_device(args.device)
    den = load_denoiser(args.model, device=str(device)).eval()
    rows = []

    def measure(spec: str, **kw) -> None:
        solver, options = solver_spec(spec)
        cfg = RunConfig(solver=solver, batch=args.batch, device=device.type, options={**options, **kw.pop("options", {})}, **kw)
        start = time.time()
        try:
            fd = fd_against_fashion(batch_sampler(den, cfg), num=args.num, batch=args.batch, device=device)
            err = None
        except ValueError as e:  # e.g. an NFE budget too small for the solver
            fd, err = None, str(e)
        rows.append({"solver": spec, "nfe": kw.get("nfe"), "rtol": cfg.options.get("rtol"), "fd": fd, "error": err,
                     "seconds": round(time.time() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)

    try:
        floor = floor_fd(device)
    except (ValueError, OSError) as err:  # the Fashion-MNIST files are not on every machine
        print(f"floor not measured here: {err}", flush=True)
        floor = None
    print(json.dumps({"floor_test_vs_train": floor}), flush=True)
    for solver in [] if args.only_reference else args.solvers.split(","):
        for nfe in (int(n) for n in args.nfe.split(",")):
            measure(solver, nfe=nfe, steps=None)
    if not args.no_reference:
        measure("reference", steps=2, options={"rtol": args.reference_rtol, "atol": args.reference_rtol * 1e-2})
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"model": args.model, "num": args.num, "floor": floor, "device": device_name, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"fd_{args.model}" + (f"_{args.preset}" if args.preset else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    nfes = [int(n) for n in args.nfe.split(",")]
    floor_text = f"{floor:.3f}" if floor is not None else "not measured"
    lines = [f"FD ({args.num} samples, {args.model}, {device_name}); floor (test vs train) {floor_text}", "",
             "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---" * (len(nfes) + 1) + "|"]
    for solver in args.solvers.split(","):
        cells = [next((f"{r['fd']:.2f}" if r["fd"] is not None else "—" for r in rows if r["solver"] == solver and r["nfe"] == n), "—") for n in nfes]
        lines.append(f"| {solver} | " + " | ".join(cells) + " |")
    ref = rows[-1] if rows and rows[-1]["solver"] == "reference" else None
    if ref is not None and ref["fd"] is not None:
        lines.append(f"\nreference (RK45, rtol {args.reference_rtol:g}): FD {ref['fd']:.2f}")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
