"""Tables and plots of measured quality: FD against NFE per solver, FD and accuracy against guidance.

``benchmarks/fd_sweep.py`` measures and writes result dicts (JSON); this module merges partial
results (a sweep can span several time-limited GPU calls), renders them as Markdown for the model
cards and the README, and draws the plots. Results are plain dicts:

* solver sweeps (``kind: "solvers"``): ``rows`` of ``{solver, nfe, nfe_used, rtol, fd, error, seconds}``,
  where ``nfe`` is the budget asked for (None for adaptive solvers and the reference, which
  choose their own steps; ``nfe_used`` is what they spent);
* guidance sweeps (``kind: "guidance"``): ``rows`` of ``{mode, w, fd, accuracy, per_class, seconds}``,
  mode ``cfg`` (classifier-free, w = 0 is the unconditional model) or ``auto`` (autoguidance).

NFE counts solver evaluations of D; under guidance (w ≠ 1) each costs two network calls.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Optional

Result = dict[str, Any]
ROW_KEYS = {"solvers": ("solver", "nfe", "rtol"), "guidance": ("mode", "w")}


def row_key(kind: str, row: dict) -> tuple:
    """What identifies a measurement (a later one of the same key replaces an earlier)."""
    return tuple(row.get(k) for k in ROW_KEYS[kind])


def done_keys(result: Optional[Result]) -> set[tuple]:
    """Keys of the rows measured successfully (skipped or failed rows are measured again)."""
    if not result:
        return set()
    return {row_key(result["kind"], r) for r in result["rows"] if r.get("fd") is not None}


def merge(results: Iterable[Result]) -> Result:
    """One result from partial ones of the same kind and model; the latest row of a key wins,
    a measured row wins over a skipped one."""
    results = list(results)
    if not results:
        raise ValueError("No results to merge.")
    kinds = {(r["kind"], r["model"]) for r in results}
    if len(kinds) != 1:
        raise ValueError(f"Results of different kinds or models cannot be merged: {sorted(kinds)}.")
    merged = {k: v for k, v in results[0].items() if k != "rows"}
    rows: dict[tuple, dict] = {}
    for res in results:
        for key in ("floor", "device"):
            if res.get(key) is not None:
                merged[key] = res[key]
        for row in res["rows"]:
            key = row_key(res["kind"], row)
            if row.get("fd") is not None or rows.get(key, {}).get("fd") is None:
                rows[key] = row
    merged["rows"] = list(rows.values())
    return merged


def load(path: Path) -> Result:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable FD result ({err}).") from None
    if not isinstance(data, dict) or data.get("kind") not in ROW_KEYS or "rows" not in data:
        raise ValueError(f"{path}: not an FD result of benchmarks/fd_sweep.py.")
    return data


def _fd(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}" if value >= 100 else f"{value:.2f}"


def _header(result: Result) -> str:
    floor = result.get("floor")
    floor_text = f"; floor (Fashion-MNIST test vs train) {floor:.2f}" if floor is not None else ""
    return (f"FD of {result['samples']:,} samples (seeds 0…{result['samples'] - 1}) to the training split in the "
            f"Fashion classifier's features, {result['model']}, {result.get('device', '?')}, "
            f"{result.get('precision', 'float32')}{floor_text}.")


def solver_table(result: Result) -> str:
    """Markdown: one row per solver, one column per NFE; adaptive solvers and the reference below."""
    nfes = sorted({r["nfe"] for r in result["rows"] if r["nfe"] is not None})
    fixed: dict[str, dict[int, dict]] = {}
    free: list[dict] = []
    for r in result["rows"]:
        (fixed.setdefault(r["solver"], {}).__setitem__(r["nfe"], r) if r["nfe"] is not None else free.append(r))
    lines = [_header(result), "", "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---:|" * len(nfes)]
    def cell(row: dict) -> str:
        fewer = row.get("fd") is not None and row.get("nfe_used") and row["nfe_used"] < row["nfe"]
        return _fd(row.get("fd")) + (f" ({row['nfe_used']:g})" if fewer else "")

    for solver, cells in fixed.items():
        lines.append(f"| {solver} | " + " | ".join(cell(cells.get(n, {})) for n in nfes) + " |")
    if any(r.get("nfe_used") and r["nfe"] and r["nfe_used"] < r["nfe"] and r.get("fd") is not None for r in result["rows"]):
        lines += ["", "(n): the solver's largest step count within the budget spent only n evaluations."]
    if free:
        lines += ["", "| solver (chooses its own steps) | rtol | NFE spent | FD |", "|---|---:|---:|---:|"]
        for r in free:
            lines.append(f"| {r['solver']} | {r['rtol']:g} | {r.get('nfe_used') or '—'} | {_fd(r.get('fd'))} |")
    missing = [r for r in result["rows"] if r.get("fd") is None and r.get("error")]
    if missing:
        reasons = sorted({r["error"] for r in missing})
        lines += ["", "— : not measured (" + "; ".join(reasons[:3]) + (" …" if len(reasons) > 3 else "") + ")."]
    return "\n".join(lines) + "\n"


def guidance_table(result: Result) -> str:
    """Markdown: FD and classifier accuracy (mean and per class) against w, per guidance kind."""
    names = result.get("class_names") or [str(k) for k in range(result.get("label_dim", 10))]
    guide = result.get("guide") or "—"
    lines = [_header(result),
             f"Solver {result['solver']} at {result['nfe']} NFE (each guided evaluation: 2 network calls); classes "
             "drawn in turn (sample k has class k mod 10); accuracy = share of samples the shipped classifier "
             f"assigns to the class asked for. Autoguidance guide: `{guide}`.", "",
             "| guidance | w | FD | accuracy | " + " | ".join(names) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(names)]
    order = {"cfg": 0, "auto": 1}
    for r in sorted(result["rows"], key=lambda r: (order.get(r["mode"], 2), r["w"])):
        mode = "classifier-free" if r["mode"] == "cfg" else "autoguidance"
        if r["mode"] == "cfg" and r["w"] == 0:
            mode += " (unconditional)"
        if r["w"] == 1:
            mode = "none (conditional model)"
        per = r.get("per_class") or [None] * len(names)
        acc = r.get("accuracy")
        lines.append(f"| {mode} | {r['w']:g} | {_fd(r.get('fd'))} | {'—' if acc is None else f'{acc:.3f}'} | "
                     + " | ".join("—" if a is None else f"{a:.2f}" for a in per) + " |")
    return "\n".join(lines) + "\n"


def render(result: Result) -> str:
    return solver_table(result) if result["kind"] == "solvers" else guidance_table(result)


def plot(result: Result, path: Path) -> Path:
    """FD against NFE (log-log, one line per solver) or FD and accuracy against w, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result["kind"] == "solvers":
        grids = sorted({_grid_of(r["solver"]) for r in result["rows"]}, key=lambda g: g != "default")
        fig, axes = plt.subplots(1, len(grids), figsize=(8 if len(grids) == 1 else 12, 5.5), dpi=110, sharey=True,
                                 squeeze=False)
        colours = _distinct_colours([r["solver"].split(":")[0] for r in result["rows"]])
        for ax, grid in zip(axes[0], grids):
            _plot_solvers(ax, {**result, "rows": [r for r in result["rows"] if _grid_of(r["solver"]) == grid]},
                          colours, None if len(grids) == 1 else grid)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
        _plot_guidance(axes, result)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _grid_of(spec: str) -> str:
    """The discretization a sweep spec names ('ipndm:disc=logsnr' → 'logsnr'), else 'default'."""
    return next((part[5:] for part in spec.split(":")[1:] if part.startswith("disc=")), "default")


def _solver_label(spec: str) -> str:
    """The spec without its grid part (the panel names the grid)."""
    return ":".join(part for part in spec.split(":") if not part.startswith("disc="))


def _distinct_colours(solvers: list[str]) -> dict[str, str]:
    """Each solver's registry colour, unless a solver before it in the figure has that colour:
    then the first palette colour not yet used (registry colours cycle a palette)."""
    from explorer.core.solvers import PALETTE, solver_color

    colours: dict[str, str] = {}
    for name in dict.fromkeys(solvers):
        used = set(colours.values())
        own = solver_color(name)
        colours[name] = own if own not in used else next((c for c in PALETTE if c not in used), own)
    return colours


def _plot_solvers(ax: Any, result: Result, colours: dict[str, str], grid: Optional[str] = None) -> None:
    """One line per solver spec, in ``colours``; variants of one solver (options) told apart by
    line style."""
    by_solver: dict[str, list[tuple[float, float]]] = {}
    for r in result["rows"]:
        nfe = r["nfe"] if r["nfe"] is not None else r.get("nfe_used")
        if r.get("fd") is not None and nfe:
            by_solver.setdefault(_solver_label(r["solver"]), []).append((nfe, r["fd"]))
    variants: dict[str, int] = {}
    for solver, points in by_solver.items():
        points.sort()
        xs, ys = zip(*points)
        if solver == "reference":
            ax.axhline(ys[-1], color="black", lw=1.2, ls="--", label=f"reference (RK45, NFE {xs[-1]:.0f})")
            continue
        base = solver.split(":")[0]
        style = ("-", "--", ":", "-.")[variants.setdefault(base, 0) % 4]
        variants[base] += 1
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=colours[base], label=solver, ls=style)
    if result.get("floor") is not None:
        ax.axhline(result["floor"], color="grey", lw=1, ls=":", label="floor (test vs train)")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({r["nfe"] for r in result["rows"] if r["nfe"] is not None})
    if ticks:
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("NFE (solver evaluations of D)")
    ax.set_ylabel("FD (classifier features)")
    title = f"{result['model']}: FD against NFE, {result['samples']:,} samples"
    ax.set_title(title if grid is None else f"{title}\n{'model default' if grid == 'default' else grid} time steps",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)


def _plot_guidance(axes: Any, result: Result) -> None:
    for mode, label, colour in (("cfg", "classifier-free", "#0072B2"), ("auto", "autoguidance", "#D55E00")):
        rows = sorted((r for r in result["rows"] if r["mode"] == mode and r.get("fd") is not None), key=lambda r: r["w"])
        if rows:
            axes[0].plot([r["w"] for r in rows], [r["fd"] for r in rows], "o-", color=colour, label=label)
            axes[1].plot([r["w"] for r in rows], [r["accuracy"] for r in rows], "o-", color=colour, label=label)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("FD")
    axes[1].set_ylabel("classifier accuracy")
    for ax in axes:
        ax.set_xlabel("guidance scale w")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[0].set_title(f"{result['model']}: FD against w")
    axes[1].set_title(f"{result['solver']}, {result['nfe']} NFE: accuracy against w")


def fill_block(text: str, name: str, content: str) -> str:
    """Replace what lies between ``<!-- NAME -->`` and ``<!-- /NAME -->`` (appended when missing)."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{begin}\n{content.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"
