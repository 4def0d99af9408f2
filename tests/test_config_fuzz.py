"""Fuzzing the two doors a run configuration comes through: ``RunConfig.from_dict`` (files, the
GUI) and the command line. Every field gets wrong types, NaN/inf, huge and negative values; the
only outcomes allowed are a run that finishes or a ValueError (the CLI: exit 2 and one line).

Counts go to ``FUZZ_COUNTS`` and are printed at the end of each test (``pytest -s`` shows them).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer import RunConfig, sample, toy
from explorer.cli import main
from explorer.core.config import LEGACY_OPTIONS
from explorer.core.plan import predicted_nfe

RING = toy("ring")
EXAMPLES = int(os.environ.get("EXPLORER_FUZZ_EXAMPLES", "150"))
RUN_LIMIT = 400  # evaluations × batch the test actually runs; larger accepted configurations are only planned
# Every key a configuration file may hold: the fields, and the former flat solver options (still read).
FIELDS = [f.name for f in dataclasses.fields(RunConfig)] + list(LEGACY_OPTIONS)
BASE = RunConfig(steps=3, batch=2, device="cpu").to_dict()

EXTREMES = [math.nan, math.inf, -math.inf, 0.0, -1.0, -1e300, 1e-300, 5e-324, 1e200, 1e308, 2**63, 2**64, -(2**63),
            10**12, 10**400, True, False, None, "", "inf", "nan", "vp", "heun", "7", [], ["vp"], {}, {"a": 1}, (1, 2)]
PLAUSIBLE = [None, 1, 2, 3, 0.5, 1.0, 7.0, 80.0, 0.01, "edm", "vp", "ve", "euler", "heun", "dpm-solver++2m", "zero",
             "denoise", "float64", "cpu", "iddpm", "logsnr"]
hostile = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.sampled_from(EXTREMES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=30),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
VALID = {  # values every one of which runs with the base configuration, to keep runs among the examples
    "process": ["vp", "ve", "edm"], "sigma_schedule": [None, "vp", "ve", "linear"], "scaling": [None, "vp", "none"],
    "disc": ["edm", "vp", "ve", "iddpm", "logsnr", "time-uniform", "time-quadratic"], "rho": [1, 3.0, 7.0],
    "sigma_min": [None, 0.002, 0.05], "sigma_max": [None, 10.0, 80], "solver": ["euler", "heun", "dpm-solver++2m", "lms"],
    "steps": [1, 2, 4], "nfe": [None], "final": ["zero", "sigma_min", "denoise"], "lower_order_final": [True, False],
    "alpha": [0.5, 1], "churn": [0.0], "s_min": [0.0, 0.1], "s_max": ["inf", 50.0], "s_noise": [1.0, 1.003],
    "eta": [0.0, 1.0], "rtol": [None, 0.01], "atol": [None, 0.01], "seed": [0, 7, 2**40], "batch": [1, 2, 5],
    "label": [None], "dtype": ["float32", "float64"], "device": ["cpu", "auto"], "epsilon_s": [1e-3, 1e-5],
    "fast": [True, False], "precision": ["float32", "bfloat16"],
    "options": [{}, {"alpha": 0.5}, {"churn": 1.0, "s_noise": 1.003}],
    "sigmas": [None, [80.0, 10.0, 1.0, 0.0], [5.0, 0.5]], "timesteps": [None], "init_sigma": [None, 80.0],
    "orders": [None], "shift": [1.0, 3.0], "schedule_label": [None, "file"],
    "guidance": [1.0], "guide": [None],
}
assert set(VALID) == set(FIELDS), set(FIELDS) ^ set(VALID)
mutations = st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: st.one_of(st.sampled_from(VALID[n]), hostile) for n in names}))

FUZZ_COUNTS: dict[str, Counter] = {"from_dict": Counter(), "cli": Counter()}


def _outcome(fields: dict) -> str:
    try:
        cfg = RunConfig.from_dict({**BASE, **fields})
        nfe = predicted_nfe(cfg)
        if nfe is not None and nfe * cfg.batch > RUN_LIMIT or cfg.device == "cuda" and not torch.cuda.is_available():
            return "accepted (planned, not run)"
        traj = sample(RING, cfg.replace(device="cpu"), record_evals=False)
    except ValueError as err:
        assert str(err).strip() and "\n" not in str(err).strip(), repr(err)
        return "ValueError"
    assert traj.samples.shape[0] == cfg.batch
    return "ran"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(mutations)
def test_from_dict_with_hostile_values_runs_or_raises_value_error(fields):
    counts = FUZZ_COUNTS["from_dict"]
    counts["tried"] += 1
    try:
        counts[_outcome(fields)] += 1
    except Exception as err:  # noqa: BLE001 — counted, then the test fails with it
        counts["other"] += 1
        raise AssertionError(f"{fields!r} raised {type(err).__name__}: {err}") from err


FLAG_VALUES = {
    "--process": ["vp", "ve", "edm", "xx", ""], "--disc": ["edm", "iddpm", "logsnr", "time-uniform", "no"],
    "--rho": ["7", "0", "-1", "nan", "inf", "1e300", "x"], "--sigma-min": ["0.002", "0", "-1", "nan", "1e-300", "1e300"],
    "--sigma-max": ["80", "1e200", "1e300", "inf", "nan", "0.001"], "--epsilon-s": ["1e-3", "0", "1", "1e-300", "nan"],
    "--solver": ["heun", "euler", "dpm-solver++2m", "rk45", "ddim", "nope"], "--steps": ["3", "0", "-1", "1000000000000", "x"],
    "--nfe": ["4", "0", "1000000000000", "x"], "--final": ["zero", "sigma_min", "denoise", "no"],
    "--alpha": ["1", "0.5", "0", "1e-300", "nan", "2"], "--churn": ["0", "5", "-1", "inf", "nan"],
    "--s-min": ["0", "nan", "-inf", "inf"], "--s-max": ["inf", "nan", "-1"], "--s-noise": ["1", "-1", "1e300", "nan"],
    "--eta": ["1", "-1", "nan", "1e300"], "--rtol": ["1e-3", "0", "-1", "nan"], "--atol": ["1e-3", "0", "inf"],
    "--seed": ["0", "-1", str(2**63), str(2**64), "x"], "--batch": ["2", "0", "-5", "1000000000"],
    "--label": ["0", "-1", "x"], "--dtype": ["float32", "float64", "float16"], "--device": ["cpu", "gpu"],
}
flag_sets = st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.just(None), min_size=1, max_size=4).flatmap(
    lambda chosen: st.fixed_dictionaries({k: st.sampled_from(FLAG_VALUES[k]) for k in chosen}))


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], database=None)
@given(flags=flag_sets)
def test_cli_with_random_flags_exits_0_or_2_with_one_line(flags, tmp_path_factory, capsys):
    counts = FUZZ_COUNTS["cli"]
    counts["tried"] += 1
    out = tmp_path_factory.mktemp("fuzz") / "run.safetensors"
    argv = ["sample", "--model", "ring", "--batch", "2", "--steps", "3", "--device", "cpu", "--no-evals", "--out", str(out)]
    for flag, value in flags.items():
        if flag == "--nfe":
            argv.remove("--steps"), argv.remove("3")  # --steps and --nfe exclude each other
        argv += [f"{flag}={value}"]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: a value of the wrong form (usage line + error line)
        code = "argparse"
        assert exit_.code == 2
    err = capsys.readouterr().err
    if code == 0:
        counts["ran"] += 1
        assert out.exists()
    elif code == 2:
        counts["ValueError"] += 1
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("diffusion-explorer: error: "), err
        assert not out.exists()
    elif code == "argparse":
        counts["argparse refusal"] += 1
        assert "Traceback" not in err and not out.exists()
    else:
        counts["other"] += 1
        raise AssertionError(f"{argv} ended with {code}: {err}")


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    for door, counts in FUZZ_COUNTS.items():
        if counts:
            print(f"\nfuzz {door}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
