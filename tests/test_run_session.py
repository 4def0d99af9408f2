"""The Qt-free run session: the one holder of the denoiser, the panel's values and the last run."""
from __future__ import annotations

import pytest

from explorer.core.analytic import toy
from explorer.core.config import RunConfig
from explorer.session.run import RunSession
from explorer.session.status import RunStatus
from explorer.session.values import Invalid


def recorder(state: RunSession) -> list[tuple]:
    seen: list[tuple] = []
    for event in ("denoiser", "values", "replaced", "config", "status"):
        state.observe(event, lambda *args, e=event: seen.append((e, *args)))
    return seen


def test_an_edit_updates_the_config_and_the_last_valid_one_survives_an_invalid_edit():
    state = RunSession(toy("ring"), "ring", RunConfig(steps=6, batch=8))
    seen = recorder(state)
    state.set_value("steps", 9)
    assert state.config.steps == 9 and state.last_config is state.config
    assert [e[0] for e in seen] == ["values", "config"]
    state.set_value("sigma_min", Invalid("not a number"))
    assert state.config is None and state.culprit == "sigma_min" and state.error == "not a number"
    assert state.last_config.steps == 9  # the Compare tab's template while the panel is invalid


def test_a_denoiser_switch_drops_the_run_and_lets_an_untouched_batch_follow():
    state = RunSession(toy("ring"), "ring", RunConfig(steps=6, batch=512))  # 512: the toys' default batch
    state.set_status(RunStatus("finished", 6, 6, 11))
    seen = recorder(state)
    moons = toy("moons")
    state.set_denoiser(moons, "moons")
    assert state.denoiser is moons and state.denoiser_spec == "moons" and state.status == RunStatus()
    assert state.trajectory is None and state.value("batch") == 512  # a toy again: the batch stays
    assert ("denoiser", moons) in seen and ("replaced",) not in seen
    state.set_value("batch", 7)
    state.set_denoiser(toy("ring"), "ring")
    assert state.value("batch") == 7  # a batch the user chose is kept


def test_set_config_replaces_the_values_and_unknown_events_are_refused():
    state = RunSession(toy("ring"), "ring", RunConfig(steps=6, batch=8))
    seen = recorder(state)
    config = RunConfig(solver="euler", steps=4, batch=16)
    state.set_config(config)
    assert state.config == config and state.value("solver") == "euler" and ("replaced",) in seen
    seen.clear()
    state.set_config(config)
    assert seen == []  # already the configuration: nothing to tell
    with pytest.raises(ValueError, match="events"):
        state.observe("nonsense", print)
