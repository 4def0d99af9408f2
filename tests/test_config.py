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
        (dict(churn=-1.0), "Churn"), (dict(solver="nope"), "Unknown solver"), (dict(process="xx"), "Unknown process"),
        (dict(disc="xx"), "Unknown discretization"), (dict(steps=0), "steps"), (dict(churn=1.0, solver="ddim"), "Churn applies"),
        (dict(batch=0), "batch"), (dict(alpha=0.0), "α"), (dict(final="never"), "final"), (dict(rtol=-1.0), "rtol"),
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


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=1e-4, max_value=200),
    st.none(),
)
configs = st.fixed_dictionaries(
    {
        "process": st.sampled_from(["vp", "ve", "edm", "bogus"]),
        "sigma_schedule": st.sampled_from([None, "vp", "ve", "linear"]),
        "scaling": st.sampled_from([None, "vp", "none"]),
        "disc": st.sampled_from(list(DISCRETIZATIONS)),
        "rho": st.one_of(st.floats(min_value=-3, max_value=20), st.just(math.nan)),
        "sigma_min": numbers,
        "sigma_max": numbers,
        "solver": st.sampled_from(list(SOLVERS) + ["not-a-solver"]),
        "steps": st.one_of(st.none(), st.integers(-2, 12)),
        "nfe": st.one_of(st.none(), st.integers(-1, 25)),
        "final": st.sampled_from(list(FINALS)),
        "lower_order_final": st.booleans(),
        "churn": st.floats(min_value=-1, max_value=50),
        "eta": st.floats(min_value=-0.5, max_value=2),
        "rtol": st.one_of(st.none(), st.floats(min_value=1e-3, max_value=0.5)),
        "batch": st.integers(0, 3),
        "dtype": st.sampled_from(["float32", "float64"]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_random_configurations_run_or_raise_value_error(fields):
    try:
        cfg = RunConfig(device="cpu", **fields)
        traj = sample(RING, cfg, record_evals=False)
    except ValueError:
        return
    assert torch.isfinite(traj.samples).all()
    assert traj.nfe >= 1 or cfg.solver == "dpm-solver-fast"
