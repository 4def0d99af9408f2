"""Run configurations: JSON round trip, clear errors, and random configurations (hypothesis)."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer import RunConfig, sample, toy
from explorer.core.discretization import DISCRETIZATIONS, FINALS
from explorer.core.solvers import SOLVERS

RING = toy("ring")


def test_json_round_trip():
    cfg = RunConfig(solver="dpm-solver-3", process="vp", disc="logsnr", steps=9, s_max=math.inf, sigma_min=0.01)
    assert RunConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "fields,message",
    [
        (dict(rho=0.0), "ρ"), (dict(rho=-2.0), "ρ"), (dict(sigma_min=2.0, sigma_max=1.0), "smaller"),
        (dict(churn=-1.0), "S_churn must satisfy 0 ≤ S_churn"), (dict(solver="nope"), "Unknown solver"), (dict(process="xx"), "Unknown process"),
        (dict(disc="xx"), "Unknown discretization"), (dict(steps=0), "steps"), (dict(churn=1.0, solver="ddim"), "churn applies to euler, heun and dpm2 only, not to ddim"),
        (dict(batch=0), "batch"), (dict(alpha=0.0), "α must satisfy 0.0001 ≤ α ≤ 1"), (dict(final="never"), "final"), (dict(rtol=-1.0), "rtol"),
        (dict(steps=None, nfe=None), "steps or an NFE"),
    ],
)
def test_bad_configurations_raise_value_error(fields, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**fields)


def test_unknown_json_field():
    with pytest.raises(ValueError, match="Unknown run-configuration field"):
        RunConfig.from_json('{"colour": 3}')
    with pytest.raises(ValueError, match="not valid JSON"):
        RunConfig.from_json("{")
    with pytest.raises(ValueError, match="nests its JSON too deeply"):
        RunConfig.from_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="process must be a name"):
        RunConfig.from_json('{"process": ["vp"]}')  # was TypeError: unhashable type: 'list'
    with pytest.raises(ValueError, match="mapping of fields"):
        RunConfig.from_dict([("process", "vp")])


def mostly(valid, invalid):
    """An invalid value one time in eight, so that most examples really run."""
    return st.sampled_from(range(8)).flatmap(lambda k: invalid if k == 7 else valid)


configs = st.fixed_dictionaries(
    {
        "process": mostly(st.sampled_from(["vp", "ve", "edm"]), st.just("bogus")),
        "sigma_schedule": st.sampled_from([None, None, "vp", "ve", "linear"]),
        "scaling": st.sampled_from([None, None, "vp", "none"]),
        "disc": st.sampled_from(list(DISCRETIZATIONS)),
        "rho": mostly(st.floats(min_value=0.5, max_value=20), st.sampled_from([0.0, -1.0, math.nan, 1e-6, 1e6])),
        "sigma_min": mostly(st.one_of(st.none(), st.floats(min_value=1e-4, max_value=1.0)),
                            st.sampled_from([math.nan, -1.0, 0.0, math.inf, 500.0])),
        "sigma_max": mostly(st.one_of(st.none(), st.floats(min_value=1.0, max_value=2e6)),
                            st.sampled_from([math.nan, math.inf, 1e-5])),
        "solver": mostly(st.sampled_from(list(SOLVERS)), st.just("not-a-solver")),
        "steps": mostly(st.integers(1, 12), st.sampled_from([None, 0, -2])),
        "nfe": st.one_of(st.none(), st.none(), st.none(), st.integers(-1, 25)),
        "final": st.sampled_from(list(FINALS)),
        "lower_order_final": st.booleans(),
        "churn": mostly(st.sampled_from([0.0, 0.0, 5.0, 40.0]), st.just(-1.0)),
        "eta": mostly(st.floats(min_value=0, max_value=2), st.just(-0.5)),
        "rtol": st.one_of(st.none(), st.floats(min_value=1e-3, max_value=0.5)),
        "batch": mostly(st.integers(1, 3), st.just(0)),
        "dtype": st.sampled_from(["float32", "float64"]),
    }
)


@settings(max_examples=int(__import__("os").environ.get("EXPLORER_FUZZ_EXAMPLES", "100")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_random_configurations_run_or_raise_value_error(fields):
    try:
        cfg = RunConfig(device="cpu", **fields)
        traj = sample(RING, cfg, record_evals=False)
    except ValueError:
        return
    assert torch.isfinite(traj.samples).all()
    assert traj.nfe >= 1 or cfg.solver == "dpm-solver-fast"
