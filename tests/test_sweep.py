"""Error against NFE: fitted orders on the exact Gaussian, the reference-solver path, the CLI."""
from __future__ import annotations

import csv
import math

import pytest
from PIL import Image

from explorer.cli import main
from explorer.core.analytic import GaussianDenoiser
from explorer.core.config import RunConfig
from explorer.core.sweep import fit_order, parse_budgets, run_sweep, sweep_configs, sweep_events
from explorer.models.loader import load_denoiser

# SPEC §5: fitted slope ≥ order − 0.3 (a single Gaussian may converge faster than the order).
ORDERS = {"euler": 1, "heun": 2, "dpm-solver++2m": 2, "dpm-solver-3": 3}


def test_fitted_orders_on_the_exact_gaussian():
    gauss = GaussianDenoiser((4,), mean=0.3, std=0.5)
    base = RunConfig(sigma_max=80.0, final="sigma_min", dtype="float64", batch=4, seed=5)
    result = run_sweep(gauss, base, list(ORDERS), [10, 20, 40, 80])
    assert result.reference_kind == "exact solution"
    orders = result.orders()
    for solver, order in ORDERS.items():
        assert orders[solver] >= order - 0.3, (solver, orders[solver], result.of(solver))
    for solver in ORDERS:
        errors = [p.error for p in result.of(solver)]
        assert errors == sorted(errors, reverse=True)  # monotone in the asymptotic range
    assert orders["euler"] < 1.5  # and Euler is not secretly second order: the fit can tell them apart


def test_fit_order_recovers_a_known_slope():
    nfe = [4, 8, 16, 32]
    assert fit_order(nfe, [3.0 * n**-2.5 for n in nfe]) == pytest.approx(2.5)
    assert fit_order(nfe, [1e-2, 0.0, 2.5e-3, float("nan")]) == pytest.approx(1.0)  # zero/NaN points left out
    assert math.isnan(fit_order([4, 4], [1.0, 0.5]))
    assert math.isnan(fit_order([4], [1.0]))


def test_reference_solver_when_no_exact_solution():
    ring = load_denoiser("ring")
    base = RunConfig(final="zero", batch=3)
    result = run_sweep(ring, base, ["heun"], [10, 40], reference_rtol=1e-7)
    assert result.reference_kind == "reference solver"
    coarse, fine = (p.error for p in result.of("heun"))
    assert 0 < fine < coarse / 4


def test_budgets_are_resolved_deduplicated_and_skipped():
    runs, skipped = sweep_configs(RunConfig(), ["heun", "euler"], [1, 3, 4, 5])
    heun = [(b, c.nfe) for b, c in runs if c.solver == "heun"]
    assert heun == [(1, 1), (3, 3), (5, 5)]  # NFE 4 gives the same 2 steps as NFE 3
    assert any("same 2 steps" in s for s in skipped)
    runs, skipped = sweep_configs(RunConfig(final="sigma_min"), ["dpm-solver-3"], [2, 6])
    assert [c.nfe for _, c in runs] == [6] and "too small" in skipped[0]
    with pytest.raises(ValueError, match="chooses its own steps"):
        sweep_configs(RunConfig(), ["dpm-solver-12"], [10])
    with pytest.raises(ValueError, match="No run"):
        sweep_configs(RunConfig(final="sigma_min"), ["dpm-solver-3"], [1, 2])


def test_parse_budgets():
    assert parse_budgets("20, 5,10,5") == [5, 10, 20]
    for bad in ("", "a,b", "0,5", "5,1e9"):
        with pytest.raises(ValueError):
            parse_budgets(bad)


def test_events_report_progress_and_end_with_the_result():
    gauss = GaussianDenoiser((2,), std=0.5)
    items = list(sweep_events(gauss, RunConfig(batch=2), ["euler", "heun"], [4, 8]))
    assert [i.done for i in items] == [1, 2, 3, 4] and all(i.total == 4 for i in items)
    assert items[-1].result is not None and all(i.result is None for i in items[:-1])


def test_sweep_command_writes_table_and_plot(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", "gaussian", "--solvers", "heun,dpm-solver-3,dpm-solver++2m",
                 "--nfe", "10,20,40", "--batch", "2", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "fitted order heun" in printed and "exact solution" in printed
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 9 and {r["solver"] for r in rows} == {"heun", "dpm-solver-3", "dpm-solver++2m"}
    assert all(float(r["error"]) > 0 for r in rows)
    with Image.open(out / "sweep.png") as img:
        assert img.format == "PNG" and img.width > 300
    assert (out / "sweep.svg").read_text().lstrip().startswith("<?xml")


def test_sweep_command_rejects_bad_input(tmp_path, capsys):
    assert main(["sweep", "--model", "gaussian", "--solvers", "heun", "--nfe", "ten", "--out", str(tmp_path)]) == 2
    assert "NFE budgets" in capsys.readouterr().err
    assert main(["sweep", "--model", "gaussian", "--solvers", "nope", "--nfe", "5", "--out", str(tmp_path)]) == 2
