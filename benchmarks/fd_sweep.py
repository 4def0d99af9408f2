"""Quality of every solver, and of guidance, measured as Fréchet distance (FD) on a Fashion model.

Three modes, run from the repository root:

``solvers``   FD against NFE for every deterministic solver in the registry (read from it, so
              solvers registered later are included), the adaptive ones at ``--rtols``, and the
              ``reference`` solver (RK45, float64) — the table of the model card::

                  python3 benchmarks/fd_sweep.py solvers --model fashion32-edm --samples 10000 \\
                      --dest $OUT --time-budget 500

``guidance``  FD and per-class classifier accuracy of the class-conditional model against the
              guidance scale: classifier-free guidance at ``--cfg`` (w = 0: the unconditional
              model, w = 1: the conditional one) and autoguidance by ``--guide`` at ``--auto``::

                  python3 benchmarks/fd_sweep.py guidance --model fashion32-cond --dest $OUT --time-budget 500

``publish``   (here, after the GPU calls) merge the JSON of one or more ``--dest`` folders, write
              ``checkpoints/<model>.fd.json``/``.fd.png`` (``.guidance.*`` for guidance sweeps),
              rewrite the model cards and fill the README's tables::

                  python3 benchmarks/fd_sweep.py publish DIR [DIR ...]

Each measurement draws ``--samples`` samples (seed k for sample k, batches of ``--batch``), takes
the shipped classifier's penultimate features and compares their Gaussian statistics with the
training split's (``explorer.train.frechet``). Results are written after every measurement
(``fd_<model>.json``, ``.md`` and ``.png`` in ``--dest``, three files per mode), so a run stopped by
``--time-budget`` keeps what it measured; a measurement that would not finish within the budget
is skipped and named as such, and ``--resume FILE.json`` carries earlier results in, measuring
only what is missing. On CUDA, D is replayed as CUDA graphs (``explorer.core.fast``) at the full
batch, all under ``torch.inference_mode``.

NFE counts solver evaluations of D; a guided evaluation (w ≠ 1) costs two network calls.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script, the package is imported from the checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402

from explorer.core.config import RunConfig  # noqa: E402
from explorer.core.denoiser import Denoiser  # noqa: E402
from explorer.core.fast import FastOptions  # noqa: E402
from explorer.core.sampling import resolve_device, sample_steps  # noqa: E402
from explorer.core.solvers import SOLVERS, get_solver  # noqa: E402
from explorer.train import fd_tables  # noqa: E402

NFES = (3, 4, 5, 6, 8, 10, 20, 35)
CFG_SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0)
AUTO_SCALES = (1.5, 2.0, 3.0)  # w = 1 of autoguidance is the conditional model, measured once under cfg
WRITE_MARGIN_S = 10.0  # kept free at the end of the budget for the last write


class OutOfTime(Exception):
    """A measurement would not finish inside the time budget."""


class Scorer:
    """The classifier and the training split's feature statistics, on the device."""

    def __init__(self, device: torch.device, classifier: Optional[str], stats: Optional[str]) -> None:
        from explorer.models.classifier import load_classifier
        from explorer.train.frechet import REFERENCE_STATS, reference_statistics

        self.device = device
        self.model, _ = load_classifier(classifier, device=str(device))
        self.model.eval()
        self.mu, self.cov = reference_statistics(self.model, cache=Path(stats) if stats else REFERENCE_STATS, device=device)

    def score(self, batches: Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]) -> tuple[float, Optional[list[float]]]:
        """FD of the images, and per class the share classified as the class asked (when classes are given)."""
        from explorer.train.frechet import feature_statistics, frechet_distance

        feats, hits, counts = [], None, None
        for images, classes in batches:
            f = self.model.features(images.clamp(-1.0, 1.0).to(self.device, torch.float32))
            feats.append(f.double().cpu().numpy())
            if classes is not None:
                predicted = self.model.head(f).argmax(1).cpu()
                n = self.model.head.out_features
                hits = (hits if hits is not None else 0) + torch.bincount(classes[predicted == classes], minlength=n)
                counts = (counts if counts is not None else 0) + torch.bincount(classes, minlength=n)
        fd = frechet_distance(*feature_statistics(np.concatenate(feats)), self.mu, self.cov)
        per_class = None if hits is None else [float(h) / max(int(c), 1) for h, c in zip(hits, counts)]
        return fd, per_class


def floor_fd(scorer: Scorer) -> Optional[float]:
    """FD of the Fashion-MNIST test split to the training split (not on machines without the data)."""
    from explorer.train.datasets import load_fashion
    from explorer.train.frechet import tensor_batches

    try:
        images = load_fashion("test").images
    except (ValueError, OSError) as err:
        print(f"floor not measured here ({err})", flush=True)
        return None
    return scorer.score((b, None) for b in tensor_batches(images, 2000))[0]


class Sweep:
    """Measurements within a time budget, each written out as soon as it is made."""

    def __init__(self, args: argparse.Namespace, result: dict, stem: str) -> None:
        self.args, self.result, self.stem = args, result, stem
        budget = args.time_budget
        self.deadline = args.started + budget - min(WRITE_MARGIN_S, budget / 10) if budget else math.inf
        self.rate: Optional[float] = None  # seconds per sample-evaluation, from the measurements so far
        self.done = fd_tables.done_keys(result)
        self.dest = Path(args.dest)
        self.dest.mkdir(parents=True, exist_ok=True)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def measure(self, row: dict, run: Callable[[Callable[[float], None]], dict], evals: Optional[float]) -> None:
        """Make one measurement unless done already or predicted not to fit; then write everything."""
        key = fd_tables.row_key(self.result["kind"], row)
        if key in self.done:
            return
        predicted = self.rate * evals * self.args.samples if (self.rate and evals) else None
        start = time.monotonic()
        try:
            if predicted is not None and predicted > self.remaining() or self.remaining() <= 0:
                raise OutOfTime(f"skipped: time budget (needs about {predicted or 0:.0f} s)")

            def check(share_done: float) -> None:  # after each batch: will the rest fit?
                spent = time.monotonic() - start
                if spent / share_done - spent > self.remaining():
                    raise OutOfTime(f"stopped: time budget (would need {spent / share_done:.0f} s)")

            row.update(run(check), error=None)
        except OutOfTime as err:
            row.update(fd=None, error=str(err))
        except ValueError as err:  # e.g. an NFE budget too small for the solver
            row.update(fd=None, error=str(err).split(";")[0])
        row["seconds"] = round(time.monotonic() - start, 1)
        if row.get("fd") is not None and evals:  # float32 runs of a known NFE teach the rate
            self.rate = row["seconds"] / (evals * self.args.samples)
        self.result["rows"] = [r for r in self.result["rows"] if fd_tables.row_key(self.result["kind"], r) != key] + [row]
        print(json.dumps(row), flush=True)
        self.write()

    def write(self) -> None:
        base = self.dest / f"{'fd' if self.result['kind'] == 'solvers' else 'guidance'}_{self.stem}"
        base.with_suffix(".json").write_text(json.dumps(self.result, indent=1))
        base.with_suffix(".md").write_text(fd_tables.render(self.result))
        try:
            fd_tables.plot(self.result, base.with_suffix(".png"))
        except ImportError as err:  # no matplotlib: the table still stands
            print(f"no plot ({err})", flush=True)


def draw_batches(
    den: Denoiser, config: RunConfig, samples: int, batch: int, check: Callable[[float], None], fast: FastOptions,
    label_dim: int = 0, guide: Optional[Denoiser] = None, nfe_out: Optional[list] = None,
) -> Iterator[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """Samples in equal batches (seed k for sample k; class k mod label_dim when conditional)."""
    count = math.ceil(samples / batch)
    size = math.ceil(samples / count)
    for index, start in enumerate(range(0, samples, size)):
        n = min(size, samples - start)
        classes = (torch.arange(start, start + n) % label_dim) if label_dim else None
        cfg = config.replace(batch=n, seed=config.seed + start)
        last = None
        for last in sample_steps(den, cfg, record_evals=False, fast=fast, to_host=False, labels=classes, guide=guide):
            pass
        images = last.x / last.scale
        if not bool(torch.isfinite(images).all()):
            raise ValueError(f"samples {start}…{start + n - 1} hold NaN or infinity")
        if nfe_out is not None:
            nfe_out.append(last.nfe)
        yield images, classes
        check((index + 1) / count)


def _setup(args: argparse.Namespace, kind: str, extra: dict) -> tuple[Denoiser, Scorer, dict, torch.device]:
    from explorer.models.loader import load_denoiser

    device = resolve_device(args.device)
    den = load_denoiser(args.model, device=str(device)).eval().requires_grad_(False)
    scorer = Scorer(device, args.classifier, args.reference_stats)
    previous = [fd_tables.load(Path(p)) for p in args.resume or []]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"kind": kind, "model": Path(args.model).stem if args.model.endswith(".safetensors") else args.model,
              "samples": args.samples, "batch": args.batch, "precision": args.precision, "device": name,
              "floor": args.floor, **extra, "rows": []}
    if previous:
        result = fd_tables.merge([*previous, result])
        if any(p["samples"] != args.samples for p in previous):
            raise ValueError("--resume results were measured with another --samples count.")
    if result.get("floor") is None and not args.no_floor:
        result["floor"] = floor_fd(scorer)
    return den, scorer, result, device


# Named solver lists (a preset sets --solvers and --nfe). low-nfe: issue 11's comparison of the
# solvers after DPM-Solver++ at very low NFE (from branch solvers).
LOW_NFE = "euler,heun,dpm-solver++2m,dpm-solver++3m,unipc-3:variant=bh1,unipc-3:variant=bh2,deis-3,ipndm,ipndm-v"


def on_grid(specs: str, disc: str) -> str:
    """The same solver specs run on another discretization ('heun' → 'heun:disc=logsnr')."""
    return ",".join(f"{spec}:disc={disc}" for spec in specs.split(","))


PRESETS = {
    "low-nfe": (LOW_NFE, "3,4,5,6,8,10"),
    # the same solvers on the grid uniform in log-SNR (DPM-Solver's and UniPC's own choice): FD turns on the grid
    "low-nfe-logsnr": (on_grid(LOW_NFE, "logsnr"), "3,4,5,6,8,10"),
}
GRID_FIELDS = {"disc": str, "rho": float}  # run-level fields a spec may set beside the solver's own options


def solver_spec(text: str) -> tuple[str, dict, dict]:
    """'unipc-3:disc=logsnr:variant=bh1' → ('unipc-3', {'variant': 'bh1'}, {'disc': 'logsnr'}).

    Options are parsed by the solver's declarations; ``disc`` and ``rho`` set the run's time grid.
    """
    name, *pairs = text.strip().split(":")
    info = get_solver(name)
    options: dict = {}
    fields: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key in GRID_FIELDS:
            fields[key] = GRID_FIELDS[key](value)
            continue
        try:
            options[key] = info.option(key).parse(value)
        except KeyError:
            raise ValueError(f"{name} has no option {key!r} (in {text!r}).") from None
    return name, options, fields


def solver_names(filter_text: Optional[str], exclude: str = "") -> list[str]:
    """Deterministic solvers of the registry (the reference last), or those named (``name[:option=value…]``),
    less those excluded."""
    names = [n for n, info in SOLVERS.items() if not info.stochastic and n != "reference"] + ["reference"]
    wanted = [n.strip() for n in filter_text.split(",") if n.strip()] if filter_text else names
    dropped = {n.strip() for n in exclude.split(",") if n.strip()}
    unknown = [n for n in [*wanted, *dropped] if n.split(":")[0] not in SOLVERS]
    if unknown:
        raise ValueError(f"Unknown solver(s) {', '.join(unknown)}; the registry has {', '.join(SOLVERS)}.")
    for spec in wanted:
        solver_spec(spec)  # options named correctly
    return [n for n in wanted if n not in dropped]


def run_solvers(args: argparse.Namespace) -> dict:
    if args.preset:
        args.solvers, args.nfe = PRESETS[args.preset]
    if args.no_reference:
        args.exclude = ",".join(filter(None, [args.exclude, "reference"]))
    nfes = [int(n) for n in args.nfe.split(",")]
    rtols = [float(r) for r in args.rtols.split(",") if r.strip()]
    den, scorer, result, device = _setup(args, "solvers", {"nfe_list": nfes})
    sweep = Sweep(args, result, result["model"])
    fast = FastOptions(precision=args.precision)
    base = RunConfig(seed=args.seed, device=device.type, fast=True)

    def runner(config: RunConfig) -> Callable[[Callable[[float], None]], dict]:
        def run(check: Callable[[float], None]) -> dict:
            used: list[int] = []
            fd, _ = scorer.score(draw_batches(den, config, args.samples, args.batch, check, fast, nfe_out=used))
            return {"fd": fd, "nfe_used": round(sum(used) / len(used), 1)}
        return run

    names = solver_names(args.solvers, args.exclude)
    for nfe in nfes:  # NFE-major: a budget that runs out leaves whole columns
        for spec in names:
            name, options, fields = solver_spec(spec)
            if not SOLVERS[name].adaptive:
                sweep.measure({"solver": spec, "nfe": nfe, "rtol": None},
                              runner(base.replace(solver=name, steps=None, nfe=nfe, options=options, **fields)), nfe)
    for name in names:
        info = SOLVERS.get(name)
        if info is None:  # a spec with options: adaptive solvers are measured at their defaults
            continue
        if name == "reference":
            rtol = args.reference_rtol
            cfg = base.replace(solver=name, steps=2, nfe=None, options={"rtol": rtol, "atol": rtol * 1e-2})
            sweep.measure({"solver": name, "nfe": None, "rtol": rtol}, runner(cfg), None)
        elif info.adaptive:
            for rtol in rtols:
                cfg = base.replace(solver=name, steps=None, nfe=None, options={"rtol": rtol, "atol": rtol * 1e-2})
                sweep.measure({"solver": name, "nfe": None, "rtol": rtol}, runner(cfg), None)
    sweep.write()
    return result


def run_guidance(args: argparse.Namespace) -> dict:
    from explorer.core.guidance import load_guide

    model = Path(args.model)
    default_guide = str(model.with_name(f"{model.stem}-early.safetensors")) if model.suffix == ".safetensors" else f"{args.model}-early"
    guide_name = args.guide or default_guide
    extra = {"solver": args.solver, "nfe": args.guidance_nfe, "guide": Path(guide_name).stem}
    den, scorer, result, device = _setup(args, "guidance", extra)
    if den.label_dim <= 0:
        raise ValueError(f"{args.model} is not class-conditional; the guidance sweep needs a conditional model.")
    from explorer.models.loader import label_names

    result["label_dim"] = den.label_dim
    result["class_names"] = label_names(den) or [str(k) for k in range(den.label_dim)]
    sweep = Sweep(args, result, result["model"])
    fast = FastOptions(precision=args.precision)
    base = RunConfig(solver=args.solver, steps=None, nfe=args.guidance_nfe, seed=args.seed, device=device.type, fast=True)
    guide = None

    def runner(config: RunConfig, with_guide: bool) -> Callable[[Callable[[float], None]], dict]:
        def run(check: Callable[[float], None]) -> dict:
            batches = draw_batches(den, config, args.samples, args.batch, check, fast, den.label_dim,
                                   guide if with_guide else None)
            fd, per_class = scorer.score(batches)
            return {"fd": fd, "per_class": per_class, "accuracy": float(np.mean(per_class))}
        return run

    for w in [float(v) for v in args.cfg.split(",") if v.strip()]:
        calls = 1 if w in (0.0, 1.0) else 2
        sweep.measure({"mode": "cfg", "w": w, "calls_per_eval": calls},
                      runner(base.replace(guidance=w), False), args.guidance_nfe * calls)
    autos = [float(v) for v in args.auto.split(",") if v.strip()]
    if autos:
        try:
            guide = load_guide(guide_name, device).eval().requires_grad_(False)
        except ValueError as err:
            print(f"no autoguidance: {err}", flush=True)
            autos = []
    for w in autos:
        sweep.measure({"mode": "auto", "w": w, "calls_per_eval": 2},
                      runner(base.replace(guidance=w, guide=guide_name), True), args.guidance_nfe * 2)
    sweep.write()
    return result


def publish(folders: list[str], checkpoints: Path, readme: Path) -> list[Path]:
    """Merge the results found in ``folders``, store them beside the checkpoints, re-render cards and README."""
    from explorer.train.cards import write_card

    groups: dict[tuple[str, str], list[dict]] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            try:
                res = fd_tables.load(path)
            except ValueError:
                continue
            groups.setdefault((res["kind"], res["model"]), []).append(res)
    if not groups:
        raise ValueError(f"No fd_sweep results (*.json) in {', '.join(folders)}.")
    written, text = [], readme.read_text(encoding="utf-8")
    for (kind, model), parts in sorted(groups.items()):
        merged = fd_tables.merge(parts)
        suffix = "fd" if kind == "solvers" else "guidance"
        target = checkpoints / f"{model}.{suffix}.json"
        if target.is_file():
            merged = fd_tables.merge([fd_tables.load(target), merged])
        target.write_text(json.dumps(merged, indent=1))
        fd_tables.plot(merged, target.with_suffix(".png"))
        written += [target, target.with_suffix(".png")]
        text = fd_tables.fill_block(text, f"{suffix}-table:{model}",
                                    fd_tables.render(merged) + f"\n![plot](checkpoints/{target.with_suffix('.png').name})")
        checkpoint = checkpoints / f"{model}.safetensors"
        if checkpoint.is_file():
            written.append(write_card(checkpoint, grid=False))
    readme.write_text(text, encoding="utf-8")
    return written + [readme]


def _common(p: argparse.ArgumentParser, model: str) -> None:
    p.add_argument("--model", default=model, help="a shipped name or a checkpoint file")
    p.add_argument("--samples", type=int, default=10_000, help="samples per measurement (seeds 0…samples-1)")
    p.add_argument("--batch", type=int, default=2500, help="samples per forward (equal batches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32", help="fast-path precision of F")
    p.add_argument("--device", default="auto")
    p.add_argument("--dest", default="benchmarks/results", help="folder for the JSON, Markdown and PNG")
    p.add_argument("--time-budget", type=float, default=None, help="seconds; stop cleanly before they run out")
    p.add_argument("--resume", nargs="*", metavar="FILE.json", help="earlier results: measure only what they lack")
    p.add_argument("--floor", type=float, default=None, help="the test-vs-train FD, when this machine lacks the test split")
    p.add_argument("--no-floor", action="store_true", help="don't measure the floor")
    p.add_argument("--classifier", default=None, help="classifier weights (default: the shipped one)")
    p.add_argument("--reference-stats", default=None, help="training-split feature statistics .npz (default: shipped)")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("solvers", help="FD against NFE for every deterministic solver")
    _common(s, "fashion32-edm")
    s.add_argument("--solvers", default=None,
                   help="name[:option=value…],… (default: every deterministic solver of the registry)")
    s.add_argument("--preset", choices=sorted(PRESETS), help="a named solver list and NFE budgets (sets both)")
    s.add_argument("--no-reference", action="store_true", help="leave out the reference (RK45 on 10k samples takes minutes)")
    s.add_argument("--exclude", default="", help="comma-separated solvers to leave out (e.g. reference)")
    s.add_argument("--nfe", default=",".join(map(str, NFES)), help="NFE budgets (default 3,4,5,6,8,10,20,35)")
    s.add_argument("--rtols", default="0.05,0.01", help="tolerances of the adaptive solvers")
    s.add_argument("--reference-rtol", type=float, default=1e-5, help="RK45 tolerance of the reference (atol = rtol·1e-2)")
    g = sub.add_parser("guidance", help="FD and classifier accuracy against the guidance scale")
    _common(g, "fashion32-cond")
    g.add_argument("--guide", default=None, help="autoguidance guide (default: MODEL-early)")
    g.add_argument("--solver", default="heun")
    g.add_argument("--guidance-nfe", type=int, default=35)
    g.add_argument("--cfg", default=",".join(f"{w:g}" for w in CFG_SCALES), help="classifier-free scales")
    g.add_argument("--auto", default=",".join(f"{w:g}" for w in AUTO_SCALES), help="autoguidance scales")
    pub = sub.add_parser("publish", help="merge results into checkpoints/, the model cards and the README")
    pub.add_argument("folders", nargs="+")
    pub.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    pub.add_argument("--readme", default=str(REPO / "README.md"))
    args = parser.parse_args(argv)
    args.started = time.monotonic()  # the budget counts from here: loading and the floor are in it
    try:
        if args.mode == "publish":
            for path in publish(args.folders, Path(args.checkpoints), Path(args.readme)):
                print(path)
            return 0
        with torch.inference_mode():
            result = run_solvers(args) if args.mode == "solvers" else run_guidance(args)
    except ValueError as err:
        print(f"fd_sweep: {err}", file=sys.stderr)
        return 2
    print(fd_tables.render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
