"""FD with the default grid against steps optimized for the model (issue #12).

For each solver and NFE budget: the default run (the model's default discretization), and the
same solver on the grid :func:`explorer.core.optimize_steps.optimize_steps` chooses for it
(DP over ``--candidates`` σ's, one RK45 reference trajectory of ``--samples`` samples).
Both draw ``--num`` samples from seeds 0…num−1 and are scored by the Fashion classifier's FD
to the training split. Writes the optimized grids (``grid_<solver>_nfe<N>.json``), a JSON
and a markdown table into ``--out``.

    python benchmarks/fd_optimized_steps.py --model fashion32-edm --num 10000 --out "$OUT"
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script, the package is imported from the checkout

from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.grids import save_grid  # noqa: E402
from explorer.core.optimize_steps import check_solver, optimize_steps  # noqa: E402
from explorer.core.plan import resolve_steps  # noqa: E402
from explorer.core.sampling import resolve_device  # noqa: E402
from explorer.core.solvers import get_solver  # noqa: E402
from explorer.models.loader import load_denoiser  # noqa: E402
from explorer.train.frechet import fd_against_fashion  # noqa: E402
from explorer.train.preview import batch_sampler  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from fd_sweep import Scorer, floor_fd  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fashion32-edm")
    p.add_argument("--solvers", default="dpm-solver++2m,ipndm")
    p.add_argument("--nfe", default="5,10")
    p.add_argument("--num", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--candidates", type=int, default=48)
    p.add_argument("--samples", type=int, default=256, help="reference samples for the optimizer")
    p.add_argument("--reference-rtol", type=float, default=1e-5, help="RK45 tolerance of the optimizer's reference")
    p.add_argument("--no-floor", action="store_true", help="skip the test-vs-train floor (slow on a CPU)")
    p.add_argument("--floor", type=float, default=None, help="the test-vs-train FD, when this machine lacks the test split")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    device = resolve_device(args.device)
    den = load_denoiser(args.model, device=str(device)).eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    floor = args.floor if args.floor is not None or args.no_floor else floor_fd(Scorer(device, None, None))
    rows = []
    for solver in args.solvers.split(","):
        get_solver(solver)
        try:
            check_solver(solver)
            can_optimize = True
        except ValueError as err:  # measured on its default grid only
            print(json.dumps({"solver": solver, "optimized": f"skipped: {err}"}), flush=True)
            can_optimize = False
        for nfe in (int(n) for n in args.nfe.split(",")):
            cfg = RunConfig(solver=solver, nfe=nfe, steps=None, batch=args.batch, device=device.type)
            steps = resolve_steps(cfg, get_solver(solver))
            fixed = cfg.replace(steps=steps, nfe=None)
            runs = [("default", fixed, None)]
            if can_optimize:
                start = time.time()
                opt = optimize_steps(den, fixed, steps, args.candidates, args.samples, args.reference_rtol)
                save_grid(out / f"grid_{solver}_nfe{nfe}.json", opt.grid)
                runs.append(("optimized", fixed.replace(sigmas=opt.grid.sigmas), (opt, time.time() - start)))
                runs[0] = ("default", fixed, (opt, time.time() - start))
            for name, run, made in runs:
                start = time.time()
                fd = fd_against_fashion(batch_sampler(den, run), num=args.num, batch=args.batch, device=device)
                opt = made[0] if made else None
                rows.append({"solver": solver, "nfe": nfe, "steps": steps, "grid": name, "fd": fd,
                             "sigmas": list(run.sigmas) if run.sigmas else None,
                             "optimize_seconds": round(made[1], 1) if made else None,
                             "step_cost": None if opt is None else (opt.cost if name == "optimized" else opt.default_cost),
                             "rmse": None if opt is None else (opt.rmse if name == "optimized" else opt.default_rmse),
                             "seconds": round(time.time() - start, 1)})
                print(json.dumps(rows[-1]), flush=True)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    (out / f"fd_optimized_{args.model}.json").write_text(json.dumps(
        {"model": args.model, "num": args.num, "floor": floor, "device": device_name, "candidates": args.candidates,
         "samples": args.samples, "reference_rtol": args.reference_rtol, "rows": rows}, indent=1))
    nfes = [int(n) for n in args.nfe.split(",")]
    lines = [f"FD ({args.num} samples, {args.model}, {device_name}), default vs optimized grid "
             f"({args.candidates} candidates, {args.samples} reference samples); floor "
             + (f"{floor:.3f}" if floor is not None else "not measured"), "",
             "| solver | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---" * (len(nfes) + 2) + "|"]
    for solver in args.solvers.split(","):
        for name in ("default", "optimized"):
            cells = [next((f"{r['fd']:.2f}" for r in rows if r.get("solver") == solver and r.get("nfe") == n
                           and r.get("grid") == name), "—") for n in nfes]
            lines.append(f"| {solver} | {name} | " + " | ".join(cells) + " |")
    lines += ["", f"RMS error at σ_min of a whole run on the optimizer's {args.samples} reference samples:", "",
              "| solver | grid | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---" * (len(nfes) + 2) + "|"]
    for solver in args.solvers.split(","):
        for name in ("default", "optimized"):
            cells = [next((f"{r['rmse']:.4f}" for r in rows if r.get("solver") == solver and r.get("nfe") == n
                           and r.get("grid") == name and r.get("rmse") is not None), "—") for n in nfes]
            lines.append(f"| {solver} | {name} | " + " | ".join(cells) + " |")
    (out / f"fd_optimized_{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
