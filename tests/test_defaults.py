"""The default run (explorer.core.defaults), the network precision of a run, and the CPU table's logic."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from explorer.core import cpubench as C
from explorer.core.analytic import toy
from explorer.core.config import RunConfig
from explorer.core.defaults import cpu_has_native_bf16, default_run_config, legacy_run_config
from explorer.core.fast import FastOptions
from explorer.core.sampling import final_samples, make_plan
from tests.test_fast import _network


def test_the_default_run_is_cheaper_than_the_old_one_at_the_fd_tables_choice():
    den = _network()
    new, old = default_run_config(den, "cpu"), legacy_run_config(den, "cpu")
    assert (new.solver, new.batch, old.solver, old.batch) == ("dpm-solver++2m", 16, "heun", 16)
    assert make_plan(den, new).nfe == 12 and make_plan(den, old).nfe == 35
    assert C.FD_TABLE[("dpm-solver++2m", 12)] <= 1.10 * C.FD_TABLE[("heun", 35)]
    assert new.precision == ("bfloat16" if cpu_has_native_bf16() else "float32")
    assert default_run_config(toy("ring"), "cpu") == RunConfig(solver="dpm-solver++2m", steps=12, batch=512, device="cpu")
    assert default_run_config(den, "cpu") == RunConfig.from_json(default_run_config(den, "cpu").to_json())


def test_bad_precisions_are_refused():
    with pytest.raises(ValueError, match="network precision"):
        RunConfig(precision="float16")
    with pytest.raises(ValueError, match="float32 runs only"):
        RunConfig(precision="bfloat16", dtype="float64")
    with pytest.raises(ValueError, match="reference solver"):
        RunConfig(precision="bfloat16", solver="reference")


def test_a_bfloat16_run_moves_the_result_a_little_and_leaves_the_model_alone():
    den = _network()
    cfg = RunConfig(solver="dpm-solver++2m", steps=4, batch=2, device="cpu")
    weights = {k: v.clone() for k, v in den.state_dict().items()}
    with torch.inference_mode():
        ref = final_samples(den, cfg)
        low = final_samples(den, cfg.replace(precision="bfloat16"))
    rel = float((low - ref).norm() / ref.norm())
    assert 0 < rel < 0.05
    assert all(torch.equal(v, den.state_dict()[k]) for k, v in weights.items())
    assert next(den.parameters()).dtype == torch.float32


def test_the_cpu_table_measures_its_rows_and_writes_markdown():
    den = _network()
    rows = [lever for lever in C.levers(den, cpu_bf16=True)
            if lever.name.startswith(("today", "+ jit.freeze", "+ bfloat16 network"))][:3]
    rows = [replace(lever, config=lever.config.replace(batch=2, steps=2)) for lever in rows]
    before = torch.get_num_threads()
    table = C.measure_all(den, rows, rounds=1, d_calls=1)
    assert torch.get_num_threads() == before  # the rows' own thread counts are not left behind
    assert [r["lever"] for r in table] == [lever.name for lever in rows]
    assert all(r["d_ms"]["median"] > 0 for r in table)
    assert table[0]["run_s"] is not None and table[0]["first_x0_s"]["median"] <= table[0]["run_s"]["median"]
    assert table[0]["fd"] is None  # only the shipped grid's rows carry the card's FD
    frozen = C.frozen_variant(den, FastOptions(), 2)
    x, s = torch.randn(2, *den.shape), torch.full((2,), 1.5)
    with torch.inference_mode():
        assert torch.allclose(frozen(x, s), den(x, s), rtol=1e-4, atol=1e-4)
    text = C.markdown({"environment": {"device": "cpu", "torch": torch.__version__, "cpu_count": 2},
                       "cpu_bf16": True, "rows": table})
    assert "| today: heun 35 NFE, float32, batch 16 |" in text


def test_threads_follow_the_load():
    from explorer.core.defaults import cpu_threads

    assert cpu_threads(2, 0.1) == 2
    assert cpu_threads(2, 1.2) == 1
    assert cpu_threads(2, 12.0) == 1
    assert cpu_threads(16, 4.0) == 12
    assert 1 <= cpu_threads() <= (__import__("os").cpu_count() or 1)
