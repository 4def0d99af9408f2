"""``diffusion-explorer bench``: the sampler's speed against the network's own floor and k-diffusion.

For every batch, solver, precision and streaming setting it times whole runs (ms per run,
images/s), the same run through k-diffusion's sampler with the same network, σ's, batch and
latents, and the floor NFE × (one graph-replayed D). It also checks that the fast and eager
paths agree, records host and GPU memory, and summarizes a profile of where the time goes.
Results: ``<out>/<stem>.json`` and a markdown table ``<out>/<stem>.md`` naming the card.

It needs no Qt, so it runs on a headless GPU machine; k-diffusion is optional (``pip install
k-diffusion``; only its sampling module is imported, see :mod:`explorer.core.benchmark`).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import time
import traceback
from pathlib import Path
from dataclasses import replace
from typing import Any, Callable, Optional

import torch

from explorer.core import benchmark as B
from explorer.core.config import RunConfig
from explorer.core.denoiser import Denoiser
from explorer.core.fast import FastOptions, fast_denoiser, graphs_available, network_variant, release_graphs
from explorer.core.latents import NoiseStreams, seeds_for
from explorer.core.trajectory import TrajectoryRecorder

DEFAULT_MODEL = "emoji32-edm"
TARGETS = {"floor_whole": 1.05, "speedup_b16": 5.0, "speedup_b256": 2.0, "floor_b256": 1.03, "floor_b1": 1.10, "streaming": 0.03,
           "fp32_agreement": 1e-5}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time the sampler against its floor and k-diffusion (JSON + markdown)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None,
                   help=f"checkpoint name or file (default {DEFAULT_MODEL}; 'random' or a missing default: an "
                        "untrained DDPM++ of the shipped size)")
    p.add_argument("--batches", default="1,16,256", help="comma-separated batch sizes")
    p.add_argument("--solvers", default="heun:18,dpm-solver++2m:10", help="solver:steps pairs")
    p.add_argument("--precisions", default="float32,bfloat16", help="float32 and/or bfloat16 (network under autocast)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row (default by batch size)")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON, markdown and profiles")
    p.add_argument("--stem", default=None, help="file name stem (default bench-<card>)")
    p.add_argument("--no-kdiffusion", action="store_true", help="skip the k-diffusion baseline")
    p.add_argument("--memory-batch", type=int, default=1024, help="batch of the recording-memory check (0: skip)")
    p.add_argument("--memory-steps", type=int, default=35, help="Heun steps of the recording-memory check")
    p.add_argument("--agreement-batch", type=int, default=16, help="batch of the fast/eager agreement check")
    p.add_argument("--profile", action="store_true", help="profile one run at the smallest and largest batch")
    p.add_argument("--compile", default="", help="batches at which torch.compile is tried under the graph, e.g. 1,16,256")
    p.add_argument("--compile-precision", default="bfloat16", help="precision of the torch.compile trial")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds; no new torch.compile is started past it")
    p.add_argument("--no-whole-steps", action="store_true", help="skip the rows with whole steps captured as graphs")
    p.add_argument("--cpu-table", action="store_true",
                   help="only the CPU table: each lever of the default run (explorer.core.cpubench), on the CPU")
    p.add_argument("--cpu-repeats", type=int, default=3, help="timed runs per CPU-table row (median reported)")
    p.add_argument("--cpu-compile-budget", type=float, default=0.0,
                   help="seconds torch.compile may take in the CPU table (0: not tried)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------ the network

def load_network(spec: Optional[str], device: torch.device) -> tuple[Denoiser, dict[str, Any]]:
    """The denoiser to time: a checkpoint, or an untrained DDPM++ of the shipped checkpoints' size."""
    from explorer.models.loader import load_denoiser, shipped_checkpoints

    if spec is None and DEFAULT_MODEL in shipped_checkpoints():
        spec = DEFAULT_MODEL
    if spec is not None and spec != "random":
        den = load_denoiser(spec)
        source = spec
    else:
        den = random_ddpmpp()
        source = "random (untrained DDPM++, the shipped checkpoints' architecture)"
    den = den.to(device).eval().requires_grad_(False)
    params = sum(p.numel() for p in den.parameters())
    return den, {"model": source, "name": den.name, "shape": list(den.shape), "parameters": params}


def random_ddpmpp(seed: int = 0) -> Denoiser:
    """The shipped checkpoints' DDPM++ (explorer.train.loop.DEFAULT_ARCH) for RGB 32×32, random weights.

    Every weight is redrawn (also the zero-initialised output layers), so D is not trivially
    c_skip·x and precision effects show.
    """
    from explorer.models.networks import build_denoiser
    from explorer.train.loop import DEFAULT_ARCH

    arch = {"class": "SongUNet", "img_resolution": 32, "in_channels": 3, "out_channels": 3, **DEFAULT_ARCH}
    den = build_denoiser("edm", arch, {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0}, name="ddpmpp-random")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in den.parameters():
            fan_in = max(1, p[0].numel()) if p.ndim > 1 else 1
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in) if p.ndim > 1 else p * 0)
    return den


# ------------------------------------------------------------------------------ measurements

class Bench:
    """One benchmark session: the network, its settings, and the results gathered so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        from explorer.core.sampling import resolve_device

        self.args = args
        self.started = time.perf_counter()
        self.device = resolve_device(args.device)
        self.batches = [int(b) for b in args.batches.split(",") if b.strip()]
        self.solvers = [_solver_steps(s) for s in args.solvers.split(",") if s.strip()]
        self.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
        for p in self.precisions:
            FastOptions(precision=p)  # ValueError for unknown names
        self.den, model_info = load_network(args.model, self.device)
        self.graphs = graphs_available(self.device)
        self.whole_steps = (False, True) if self.graphs and not args.no_whole_steps else (False,)
        self.results: dict[str, Any] = {
            "environment": B.environment(self.device), "network": model_info, "fast_path": self.graphs,
            "targets": TARGETS, "errors": [],
        }
        self._plans: dict[tuple[int, RunConfig], Any] = {}
        self._variants: dict[FastOptions, Denoiser] = {}
        self.best: dict[tuple[int, str], FastOptions] = {}
        self.floor: dict[tuple[int, str], float] = {}
        self.kd = None
        if not args.no_kdiffusion:
            try:
                self.kd, info = B.load_k_diffusion_sampling()
                self.results["k_diffusion"] = info
            except ImportError as err:
                self.results["k_diffusion"] = {"error": str(err)}

    # -------------------------------------------------------------- helpers
    def config(self, solver: str, steps: int, batch: int, **kw: Any) -> RunConfig:
        return RunConfig(solver=solver, steps=steps, batch=batch, device=self.device.type, **kw)

    def options(self, batch: int, precision: str) -> FastOptions:
        """The fast path's options that won the D timing at this batch and precision."""
        return self.best.get((batch, precision), FastOptions(precision=precision))

    def uncompiled(self, batch: int, precision: str) -> FastOptions:
        """The same options without torch.compile (for eager references and k-diffusion's network)."""
        opts = self.options(batch, precision)
        return FastOptions(precision=opts.precision, channels_last=opts.channels_last)

    def noise(self, batch: int) -> torch.Tensor:
        return NoiseStreams(seeds_for(0, batch)).randn(self.den.shape).to(self.device)

    def repeats(self, batch: int) -> int:
        return self.args.repeats or (10 if batch <= 16 else 5)

    def run_ours(self, config: RunConfig, noise: torch.Tensor, fast: Optional[FastOptions], stream: bool,
                 denoiser: Optional[Denoiser] = None) -> torch.Tensor:
        """One run through the engine; with ``stream`` every state and x₀ is recorded on the host."""
        from explorer.core.sampling import make_plan, sample_steps

        den = denoiser or self.den
        key = (id(den), config)
        if key not in self._plans:
            self._plans[key] = make_plan(den, config)
        plan = self._plans[key]
        recorder = TrajectoryRecorder(config, den.name, record_evals=False) if stream else None
        last = None
        for last in sample_steps(den, config, noise, record_evals=False, plan=plan, fast=fast, to_host=stream):
            if recorder is not None:
                recorder.add(last)
        if recorder is not None:
            recorder.finish()
        return last.x / last.scale

    def sigmas(self, config: RunConfig, on_device: bool) -> torch.Tensor:
        from explorer.core.sampling import make_plan

        plan = make_plan(self.den, config)
        values = [float(plan.process.sigma(t)) if t > 0 else 0.0 for t in plan.t]
        return torch.tensor(values, dtype=torch.float32, device=self.device if on_device else "cpu")

    def k_model(self, batch: int, precision: str) -> Callable:
        """The network k-diffusion calls: the same D, eager (bf16: the same autocast variant)."""
        if precision == "float32":
            return self.den
        return self.variant(self.uncompiled(batch, precision))

    def variant(self, options: FastOptions) -> Denoiser:
        """The eager denoiser with these options (cached: channels-last copies the weights)."""
        if options not in self._variants:
            self._variants[options] = network_variant(self.den, options)
        return self._variants[options]

    # -------------------------------------------------------------- phases
    def phase(self, name: str, fn: Callable[[], Any]) -> None:
        """Run one phase; a failure is recorded and the next phase still runs."""
        start = time.perf_counter()
        print(f"[bench] {name} …", file=sys.stderr, flush=True)
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - one broken phase must not lose the others' numbers
            self.results["errors"].append({"phase": name, "error": repr(err), "trace": traceback.format_exc()[-2000:]})
            print(f"[bench] {name} failed: {err!r}", file=sys.stderr, flush=True)
        self.results.setdefault("phase_seconds", {})[name] = round(time.perf_counter() - start, 2)
        self.save()

    def guarded(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, or None with the error recorded (one failing row must not cost the others)."""
        try:
            return fn()
        except Exception as err:  # noqa: BLE001
            self.results["errors"].append({"phase": what, "error": repr(err), "trace": traceback.format_exc()[-2000:]})
            print(f"[bench] {what} failed: {err!r}", file=sys.stderr, flush=True)
            return None

    def denoiser_times(self) -> None:
        """D alone: eager and graph-replayed for each variant; the fastest graph is each row's choice.

        Variants: float32 as the eager path computes it; bfloat16 plain and channels-last; and,
        at the ``--compile`` batches, ``torch.compile`` under the graph for ``--compile-precision``
        (compile time and agreement with the uncompiled graph recorded).
        """
        rows = []
        compile_batches = {int(b) for b in self.args.compile.split(",") if b.strip()} if self.graphs else set()
        for batch in self.batches:
            x = self.noise(batch) * 2.0
            sigma = torch.full((batch,), 2.0, device=self.device)
            for precision in self.precisions:
                variants = [FastOptions(precision=precision)]
                if precision == "bfloat16" and self.den.is_image:
                    variants.append(FastOptions(precision=precision, channels_last=True))
                if batch in compile_batches and precision == self.args.compile_precision:
                    variants.append(FastOptions(precision=precision, compile=True))
                best = None
                for opts in variants:
                    if opts.compile and self.args.time_budget and time.perf_counter() - self.started > self.args.time_budget:
                        rows.append({"batch": batch, "precision": precision, "compile": True, "skipped": "time budget"})
                        continue
                    row = self.guarded(f"D b={batch} {opts}", lambda: self._denoiser_row(opts, x, sigma))
                    if row is None:
                        continue
                    rows.append(row)
                    floor = row.get("graph_replay_ms", row.get("eager_ms"))
                    if best is None or floor < best[0]:
                        best = (floor, opts)
                self.floor[(batch, precision)], self.best[(batch, precision)] = best
        self.results["denoiser"] = rows
        self.results["fast_choice"] = [{"batch": b, "precision": p, "channels_last": o.channels_last, "compile": o.compile,
                                        "floor_d_ms": self.floor[(b, p)]} for (b, p), o in self.best.items()]

    def _denoiser_row(self, opts: FastOptions, x: torch.Tensor, sigma: torch.Tensor) -> dict[str, Any]:
        row: dict[str, Any] = {"batch": x.shape[0], "precision": opts.precision, "channels_last": opts.channels_last,
                               "compile": opts.compile}
        with torch.inference_mode():
            if not opts.compile:  # a compiled module run eagerly is not what any path uses
                eager = self.variant(opts)
                row["eager_ms"] = B.per_call_ms(lambda: eager(x, sigma), self.device)
            if self.graphs:
                start = time.perf_counter()
                wrapper = fast_denoiser(self.den, opts)
                graph = wrapper.graph(x, sigma)
                row["capture_seconds"] = round(time.perf_counter() - start, 2)
                row["captured"] = graph is not None
                if graph is not None:
                    out = graph(x, sigma, None)
                    row["graph_replay_ms"] = B.per_call_ms(graph.replay, self.device)
                    row["graph_call_ms"] = B.per_call_ms(lambda: wrapper(x, sigma), self.device)
                    if opts.compile:
                        plain = fast_denoiser(self.den, FastOptions(precision=opts.precision))(x, sigma)
                        row["vs_uncompiled_graph_rel"] = B.relative_error(out, plain)
        return row

    def agreement(self) -> None:
        """Final samples of the fast path against the eager path (and float64, and k-diffusion)."""
        batch = self.args.agreement_batch
        noise = self.noise(batch)
        out = []
        den64 = copy.deepcopy(self.den)
        for solver, steps in self.solvers:
            cfg = self.config(solver, steps, batch)
            with torch.inference_mode():
                eager = self.run_ours(cfg.replace(fast=False), noise, None, False)
                ref64 = self.run_ours(cfg.replace(fast=False, dtype="float64"), noise, None, False, denoiser=den64)
            row: dict[str, Any] = {"solver": solver, "steps": steps, "batch": batch,
                                   "fp32_eager_vs_fp64": B.relative_error(eager, ref64)}
            for precision in self.precisions:
                opts = self.options(batch, precision)
                fast = self.run_ours(cfg, noise, opts, True)
                row[f"{precision}_fast_vs_fp32_eager"] = B.relative_error(fast, eager)
                row[f"{precision}_fast_vs_fp64"] = B.relative_error(fast, ref64)
                row[f"{precision}_fast_max_abs_vs_fp32_eager"] = float((fast.double().cpu() - eager.double().cpu()).abs().max())
                if precision != "float32":
                    eager_variant = self.variant(self.uncompiled(batch, precision))
                    same = self.run_ours(cfg.replace(fast=False), noise, None, False, denoiser=eager_variant)
                    row[f"{precision}_fast_vs_{precision}_eager"] = B.relative_error(fast, same)
            if self.graphs:  # the third run at a grid replays its captured whole steps (first eager, second captures)
                whole = [self.run_ours(cfg, noise, self.options(batch, "float32"), True) for _ in range(3)][-1]
                row["float32_whole_steps_vs_fp32_eager"] = B.relative_error(whole, eager)
            if self.kd is not None and solver in B.K_DIFFUSION_SAMPLERS:
                sampler = B.k_diffusion_sampler(self.kd, solver)
                kd = B.run_k_diffusion(sampler, self.den, noise, self.sigmas(cfg, True))
                row["k_diffusion_fp32_vs_ours_fp32_eager"] = B.relative_error(kd, eager)
            out.append(row)
        del den64
        self.results["agreement"] = out

    def rows(self) -> None:
        """Whole runs: ours (streaming off/on) and k-diffusion's, against the floor."""
        table = self.results["rows"] = []
        for batch in self.batches:
            release_graphs()  # so each row's GPU peak holds only its own batch's graphs
            noise = self.noise(batch)
            for solver, steps in self.solvers:
                cfg = self.config(solver, steps, batch)
                from explorer.core.sampling import make_plan

                nfe = make_plan(self.den, cfg).nfe
                for precision in self.precisions:
                    opts = self.options(batch, precision)
                    kd = self.guarded(f"k-diffusion b={batch} {solver} {precision}",
                                      lambda: self._k_diffusion_ms(solver, cfg, batch, precision, noise)) or {}
                    for whole, stream in [(w, s) for w in self.whole_steps for s in (False, True)]:
                        row = self.guarded(f"row b={batch} {solver} {precision} stream={stream} whole={whole}",
                                           lambda: self._row(cfg, nfe, precision, replace(opts, whole_steps=whole),
                                                             stream, noise, kd))
                        if row is not None:
                            table.append(row)
                        self.save()

    def _row(self, cfg: RunConfig, nfe: int, precision: str, opts: FastOptions, stream: bool, noise: torch.Tensor,
             kd: dict[str, Any]) -> dict[str, Any]:
        batch = cfg.batch
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        # two warm-up runs: the first at a grid is eager, the second captures its whole steps
        times = B.wall_ms(lambda: self.run_ours(cfg, noise, opts, stream), self.device, self.repeats(batch), warmup=2)
        ms = sorted(times)[len(times) // 2]
        floor = nfe * self.floor.get((batch, precision), float("nan"))
        row = {
            "batch": batch, "solver": cfg.solver, "steps": cfg.steps, "nfe": nfe, "precision": precision,
            "channels_last": opts.channels_last, "compile": opts.compile, "whole_steps": opts.whole_steps,
            "streaming": stream, "ms": round(ms, 3),
            "ms_min": round(min(times), 3), "images_per_s": round(batch / ms * 1e3, 1),
            "floor_ms": round(floor, 3), "vs_floor": round(ms / floor, 4) if floor == floor else None,
            **kd,
        }
        if kd.get("k_diffusion_ms"):
            row["speedup_vs_k_diffusion"] = round(kd["k_diffusion_ms"] / ms, 3)
        if self.device.type == "cuda":
            row["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        print(f"[bench] b={batch} {cfg.solver} {precision} stream={stream} whole={opts.whole_steps}: {ms:.2f} ms "
              f"(floor ×{row['vs_floor']}, k-diffusion ×{row.get('speedup_vs_k_diffusion')})", file=sys.stderr, flush=True)
        return row

    def _k_diffusion_ms(self, solver: str, cfg: RunConfig, batch: int, precision: str,
                        noise: torch.Tensor) -> dict[str, Any]:
        """k-diffusion's time for the same run (σ's on the device, as its own get_sigmas_* return them)."""
        if self.kd is None or solver not in B.K_DIFFUSION_SAMPLERS:
            return {}
        sampler, model = B.k_diffusion_sampler(self.kd, solver), self.k_model(batch, precision)
        sig = self.sigmas(cfg, True)
        times = B.wall_ms(lambda: B.run_k_diffusion(sampler, model, noise, sig), self.device,
                          max(3, self.repeats(batch) // 2))
        return {"k_diffusion_ms": round(sorted(times)[len(times) // 2], 3)}

    def memory(self) -> None:
        """Host memory of recording a large batch (float16 storage), and the GPU peak of that run."""
        batch, steps = self.args.memory_batch, self.args.memory_steps
        if batch <= 0:
            return
        cfg = self.config("heun", steps, batch)
        noise = self.noise(batch)
        precision = "bfloat16" if "bfloat16" in self.precisions and self.graphs else "float32"
        opts = FastOptions(precision=precision)
        from explorer.core.sampling import make_plan, sample_steps

        plan = make_plan(self.den, cfg)
        for _ in sample_steps(self.den, cfg.replace(steps=2), noise, record_evals=True, fast=opts):
            pass  # warm-up: graph capture and library loading are one-time costs of the process
        out = []
        for record_evals in (False, True):
            recorder = TrajectoryRecorder(cfg, self.den.name, record_evals=record_evals, storage_dtype=torch.float16)
            estimate = recorder.estimate_bytes(self.den.shape, batch, plan.n_steps, plan.nfe)
            B.synchronize(self.device)
            before = B.rss_bytes()
            reset = B.reset_peak_rss()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            start = time.perf_counter()
            for event in sample_steps(self.den, cfg, noise, record_evals=record_evals, plan=plan, fast=opts):
                recorder.add(event)
            traj = recorder.finish()
            seconds = time.perf_counter() - start
            row = {
                "batch": batch, "steps": steps, "nfe": plan.nfe, "record_evals": record_evals, "storage": "float16",
                "estimate_mb": round(estimate / 1e6, 1), "allocated_mb": round(recorder.allocated_bytes / 1e6, 1),
                "held_rss_mb": round((B.rss_bytes() - before) / 1e6, 1),
                "peak_rss_mb": round((B.peak_rss_bytes() - before) / 1e6, 1) if reset else None,
                "seconds": round(seconds, 3), "precision": precision,
                "trajectory_mb": round(sum(t.nelement() * t.element_size() for t in traj.tensors().values()) / 1e6, 1),
            }
            if self.device.type == "cuda":
                row["gpu_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            out.append(row)
            del traj, recorder
        self.results["memory"] = out
        release_graphs()

    def profile(self) -> None:
        """Where the time of one fast run goes (smallest and largest batch, first solver, each precision)."""
        solver, steps = self.solvers[0]
        out, tables = {}, []
        for batch in sorted({min(self.batches), max(self.batches)}):
            noise = self.noise(batch)
            for precision in self.precisions:
                cfg = self.config(solver, steps, batch)
                opts = self.options(batch, precision)
                numbers, table = B.profile_summary(lambda: self.run_ours(cfg, noise, opts, True), self.device)
                floor_d = self.floor.get((batch, precision))
                if floor_d is not None:
                    from explorer.core.sampling import make_plan

                    numbers["floor_ms"] = round(make_plan(self.den, cfg).nfe * floor_d, 3)
                key = f"b{batch}-{solver}-{precision}"
                out[key] = numbers
                tables.append(f"=== {key}: {json.dumps(numbers)}\n{table}\n")
                (self.out_dir / f"{self.stem}-profile.txt").write_text("\n".join(tables))
        self.results["profile"] = out

    # -------------------------------------------------------------- output
    @property
    def out_dir(self) -> Path:
        path = Path(self.args.out)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def stem(self) -> str:
        if self.args.stem:
            return self.args.stem
        card = re.sub(r"[^A-Za-z0-9]+", "-", self.results["environment"]["device"]).strip("-").lower()
        return f"bench-{card}"

    def save(self) -> None:
        self.results["checks"] = check_targets(self.results)
        (self.out_dir / f"{self.stem}.json").write_text(json.dumps(self.results, indent=1, default=str))
        (self.out_dir / f"{self.stem}.md").write_text(markdown(self.results))


def _solver_steps(text: str) -> tuple[str, int]:
    name, _, steps = text.strip().partition(":")
    try:
        return name, int(steps or 18)
    except ValueError:
        raise ValueError(f"Give solvers as name:steps, e.g. heun:18 (got {text!r}).") from None


# ------------------------------------------------------------------------------ report

def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, row by row: True/False, or None where the row is missing."""
    rows = results.get("rows", [])
    checks: dict[str, Any] = {}

    def row_checks(batch: int, stream: Optional[bool], key: str, test: Callable[[float], bool]) -> list:
        return [{"solver": r["solver"], "precision": r["precision"], "streaming": r["streaming"], key: r.get(key),
                 "ok": None if r.get(key) is None else bool(test(r[key]))}
                for r in rows if r["batch"] == batch and (stream is None or r["streaming"] == stream)]

    checks["speedup_b16_streaming"] = row_checks(16, True, "speedup_vs_k_diffusion", lambda v: v >= TARGETS["speedup_b16"])
    checks["speedup_b256"] = row_checks(256, None, "speedup_vs_k_diffusion", lambda v: v >= TARGETS["speedup_b256"])
    checks["floor_b256"] = row_checks(256, None, "vs_floor", lambda v: v <= TARGETS["floor_b256"])
    checks["floor_b1"] = row_checks(1, None, "vs_floor", lambda v: v <= TARGETS["floor_b1"])
    checks["floor_whole_steps_b1_b16"] = [
        {"batch": r["batch"], "solver": r["solver"], "precision": r["precision"], "streaming": r["streaming"],
         "vs_floor": r.get("vs_floor"), "ok": None if r.get("vs_floor") is None else r["vs_floor"] <= TARGETS["floor_whole"]}
        for r in rows if r.get("whole_steps") and r["batch"] in (1, 16)]
    streaming = []
    for on in (r for r in rows if r["streaming"]):
        same = ("batch", "solver", "precision", "whole_steps")
        off = next((r for r in rows if not r["streaming"] and all(r.get(k) == on.get(k) for k in same)), None)
        if off:
            cost = on["ms"] / off["ms"] - 1
            streaming.append({"batch": on["batch"], "solver": on["solver"], "precision": on["precision"],
                              "whole_steps": on.get("whole_steps"),
                              "cost": round(cost, 4), "ok": cost <= TARGETS["streaming"]})
    checks["streaming_cost"] = streaming
    checks["fp32_agreement"] = [{"solver": a["solver"], "rel": a.get("float32_fast_vs_fp32_eager"),
                                 "ok": a.get("float32_fast_vs_fp32_eager", 1) <= TARGETS["fp32_agreement"]}
                                for a in results.get("agreement", [])]
    checks["fp32_whole_steps_agreement"] = [
        {"solver": a["solver"], "rel": a["float32_whole_steps_vs_fp32_eager"],
         "ok": a["float32_whole_steps_vs_fp32_eager"] <= TARGETS["fp32_agreement"]}
        for a in results.get("agreement", []) if "float32_whole_steps_vs_fp32_eager" in a]
    return checks


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    """The tables of the README: whole runs, D alone, agreement, memory, targets."""
    env, net = results["environment"], results["network"]
    lines = [f"### Sampling speed on {env['device']}", "",
             f"Network: {net['model']} ({net['parameters'] / 1e6:.2f} M parameters, samples {'×'.join(map(str, net['shape']))}); "
             f"torch {env['torch']}" + (f", CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}" if "cuda" in env else "")
             + f"; k-diffusion {results.get('k_diffusion', {}).get('version', 'not run')}.", ""]
    lines += ["| batch | solver (steps, NFE) | precision | streaming | ms/run | images/s | × faster than k-diffusion "
              "| k-diffusion ms | ÷ floor | floor ms | GPU peak MiB |",
              "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results.get("rows", []):
        prec = (r["precision"] + (" cl" if r.get("channels_last") else "") + (" compiled" if r.get("compile") else "")
                + (" whole-step graphs" if r.get("whole_steps") else ""))
        lines.append(f"| {r['batch']} | {r['solver']} ({r['steps']}, {r['nfe']}) | {prec} | {_fmt(r['streaming'])} "
                     f"| {_fmt(r['ms'])} | {_fmt(r['images_per_s'], 0)} | {_fmt(r.get('speedup_vs_k_diffusion'))} "
                     f"| {_fmt(r.get('k_diffusion_ms'))} | {_fmt(r.get('vs_floor'), 3)} | {_fmt(r['floor_ms'])} "
                     f"| {_fmt(r.get('gpu_peak_mib'), 0)} |")
    lines += ["", "Floor = NFE × one graph-replayed D with the row's options (\"cl\": channels-last; \"compiled\": "
              "torch.compile under the graph, chosen where it measured fastest). "
              "k-diffusion: its own sampler on the same network, σ's, latents and batch, in the same process "
              "(σ's on the device, as its get_sigmas_* give them).", ""]
    if results.get("denoiser"):
        lines += ["| batch | precision | channels-last | compiled | D eager ms | D graph replay ms | D graph call ms "
                  "| capture s |", "|---:|---|---|---|---:|---:|---:|---:|"]
        for r in results["denoiser"]:
            if "skipped" in r:
                continue
            lines.append(f"| {r['batch']} | {r['precision']} | {_fmt(r['channels_last'])} | {_fmt(r['compile'])} "
                         f"| {_fmt(r.get('eager_ms'), 3)} | {_fmt(r.get('graph_replay_ms'), 3)} "
                         f"| {_fmt(r.get('graph_call_ms'), 3)} | {_fmt(r.get('capture_seconds'), 1)} |")
        lines.append("")
    if results.get("agreement"):
        keys = sorted({k for a in results["agreement"] for k in a if k not in ("solver", "steps", "batch")})
        lines += ["| solver | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for a in results["agreement"]:
            lines.append(f"| {a['solver']} ({a['steps']}), batch {a['batch']} | "
                         + " | ".join(_fmt(a.get(k)) for k in keys) + " |")
        lines += ["", "Relative errors ‖a − b‖/‖b‖ of the final samples.", ""]
    if results.get("memory"):
        lines += ["| batch | steps (NFE) | evals stored | storage | estimate MB | allocated MB | host RSS held MB "
                  "| host RSS peak MB | GPU peak MiB |", "|---:|---|---|---|---:|---:|---:|---:|---:|"]
        for m in results["memory"]:
            lines.append(f"| {m['batch']} | {m['steps']} ({m['nfe']}) | {_fmt(m['record_evals'])} | {m['storage']} "
                         f"| {_fmt(m['estimate_mb'], 1)} | {_fmt(m['allocated_mb'], 1)} | {_fmt(m['held_rss_mb'], 1)} "
                         f"| {_fmt(m.get('peak_rss_mb'), 1)} | {_fmt(m.get('gpu_peak_mib'), 0)} |")
        lines.append("")
    checks = results.get("checks", {})
    if checks:
        lines += ["Targets: " + "; ".join(f"{name} {sum(1 for c in rows if c.get('ok'))}/{len(rows)} met"
                                          for name, rows in checks.items() if rows), ""]
    return "\n".join(lines)


def cpu_table(args: argparse.Namespace) -> int:
    """The CPU table: levers of the default run, one row each, saved as ``<stem>-cpu.json``/``.md``."""
    import os

    from explorer.core import cpubench as C
    from explorer.core.defaults import cpu_has_native_bf16, default_run_config, legacy_run_config
    from explorer.core.fast import FastOptions

    device = torch.device("cpu")
    den, info = load_network(args.model or "fashion32-edm", device)
    env = {**B.environment(device), "cpu_count": os.cpu_count(), "device": C.cpu_model()}
    results: dict[str, Any] = {"environment": env, "network": info, "cpu_bf16": cpu_has_native_bf16(), "rows": []}
    stem = args.stem or "bench-cpu-" + re.sub(r"[^A-Za-z0-9]+", "-", env["device"]).strip("-").lower()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
        (out / f"{stem}.md").write_text(C.markdown(results))

    threads = torch.get_num_threads()
    def keep(rows: list[dict[str, Any]]) -> None:
        results["rows"] = rows
        save()

    results["rows"] = C.measure_all(den, C.levers(den, results["cpu_bf16"]), args.cpu_repeats, after_round=keep)
    save()
    torch.set_num_threads(threads)
    default, legacy = default_run_config(den, "cpu"), legacy_run_config(den, "cpu")
    if results["cpu_bf16"]:
        results["bf16_rel_error"] = {f"{c.solver} {c.steps} steps": C.final_agreement(den, c, FastOptions(precision="bfloat16"))
                                     for c in (legacy, default)}
    noise = NoiseStreams(seeds_for(0, default.batch)).randn(den.shape)
    pairs = [(C.time_run(den, legacy, noise), C.time_run(den, default, noise)) for _ in range(args.cpu_repeats)]
    ratios = sorted(new[0] / old[0] for old, new in pairs)  # each pair ran back to back, under the same load
    results["default"] = {"config": f"{default.solver}, {default.steps} steps, batch {default.batch}, {default.precision}",
                          "run_s": round(sorted(n[0] for _, n in pairs)[len(pairs) // 2], 3),
                          "first_x0_s": round(sorted(n[1] for _, n in pairs)[len(pairs) // 2], 3),
                          "legacy_run_s": round(sorted(o[0] for o, _ in pairs)[len(pairs) // 2], 3),
                          "vs_legacy": round(ratios[len(ratios) // 2], 3), "load": C.load_average(),
                          "pairs_s": [[round(o[0], 3), round(n[0], 3)] for o, n in pairs]}
    if args.cpu_compile_budget > 0:
        results["compile"] = _guard(lambda: C.compile_trial(den, FastOptions(), 16, args.cpu_compile_budget))
    save()
    print(C.markdown(results))
    return 0


def _guard(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - one lever failing (a missing compiler) must not lose the table
        print(f"[bench] failed: {err!r}", file=sys.stderr, flush=True)
        return {"error": repr(err)}


def run(args: argparse.Namespace) -> int:
    if args.cpu_table:
        return cpu_table(args)
    bench = Bench(args)
    bench.phase("memory", bench.memory)
    bench.phase("denoiser", bench.denoiser_times)
    bench.phase("agreement", bench.agreement)
    bench.phase("rows", bench.rows)
    if args.profile:
        bench.phase("profile", bench.profile)
    bench.save()
    print(markdown(bench.results))
    return 1 if bench.results["errors"] else 0


if __name__ == "__main__":  # runnable without the CLI's other subcommands: python -m explorer.commands.bench
    parser = argparse.ArgumentParser(prog="bench")
    register(parser.add_subparsers(dest="command"))
    sys.exit(run(parser.parse_args(["bench", *sys.argv[1:]])))
