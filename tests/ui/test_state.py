"""URL round-trip and config building (pure parts of ui.state)."""

from __future__ import annotations

from core import config as core_config
from ui import state


def test_defaults_make_no_query_and_a_valid_config():
    assert state.to_query(dict(state.DEFAULTS)) == {}
    cfg = core_config.normalize(state.build_config(state.DEFAULTS))
    assert cfg["dataset"] == "digits" and cfg["scenario"]["kind"] == "backdoor"
    assert [s["name"] for s in cfg["strategies"]] == [
        "saps",
        "saps",
        "random",
        "gradient",
        "last_layer",
        "all",
    ]
    assert cfg["strategies"][1]["largest"] is False
    assert all(s["fraction"] == 0.02 for s in cfg["strategies"] if s["name"] not in ("all", "last_layer"))


def test_query_round_trip():
    s = dict(
        state.DEFAULTS,
        frac=0.1,
        largest=False,
        curv="hutchinson",
        strategies=["saps", "all"],
        scenario="indices",
        indices=[3, 5, 8],
        seed=7,
    )
    q = state.to_query(s)
    assert q == {
        "frac": "0.1",
        "largest": "0",
        "curv": "hutchinson",
        "strategies": "saps,all",
        "scenario": "indices",
        "indices": "3,5,8",
        "seed": "7",
    }
    back, problems = state.from_query(q)
    assert problems == []
    assert {k: back[k] for k in q} == {k: s[k] for k in q}


def test_bad_query_values_are_reported_not_raised():
    s, problems = state.from_query({"seed": "abc", "frac": "0.03", "strategies": "saps,bogus", "nope": "1"})
    assert s["seed"] == 0 and len(problems) == 1 and "seed" in problems[0]
    assert s["frac"] == 0.02  # snapped to the nearest log-spaced option
    assert s["strategies"] == ["saps"]


def test_settings_from_config_inverts_build_config():
    s = dict(
        state.DEFAULTS, frac=0.05, strategies=["saps_smallest", "random"], method="masked_finetune", steps=7
    )
    back = state.settings_from_config(state.build_config(s))
    for k in ("frac", "strategies", "method", "steps", "dataset", "scenario", "size", "target"):
        assert back[k] == s[k], k


def test_label_flip_class_settings_reach_the_scenario_and_come_back():
    s = dict(state.DEFAULTS, scenario="label_flip", size=50, flip_source=5, flip_to=7)
    sc = state.build_config(s)["scenario"]
    assert sc == {"kind": "label_flip", "size": 50, "source": 5, "to": 7}
    back = state.settings_from_config(core_config.normalize(state.build_config(s)))
    assert (back["flip_source"], back["flip_to"]) == (5, 7)
    # −1: any class, the mirror map: the keys stay out of the config
    plain = state.build_config(dict(s, flip_source=-1, flip_to=-1))["scenario"]
    assert plain == {"kind": "label_flip", "size": 50}
    label = dict(s, scenario="indices", indices=[1, 2], corruption="label")
    assert state.build_config(label)["scenario"]["to"] == 7
    assert "to" not in state.build_config(dict(label, corruption="remove"))["scenario"]


def test_a_config_with_auto_steps_loads_as_the_methods_default():
    cfg = {"unlearning": {"method": "masked_finetune", "steps": "auto"}}
    assert state.settings_from_config(cfg)["steps"] == 0  # 0 = the method's own default
    assert state.settings_from_config({"unlearning": {"steps": 12}})["steps"] == 12


def test_method_and_steps_reach_the_config_only_where_they_apply():
    """ "" = the scenario's default method (written by normalize); steps only to a method taking them."""
    cfg = core_config.normalize(state.build_config(state.DEFAULTS))
    assert cfg["unlearning"]["method"] == "masked_finetune"  # backdoor's default
    removal = core_config.normalize(state.build_config(dict(state.DEFAULTS, scenario="random_samples")))
    assert removal["unlearning"]["method"] == "neggrad"
    assert state.build_config(dict(state.DEFAULTS, method="second_order", steps=7))["unlearning"] == {
        "method": "second_order"
    }
    assert state.build_config(dict(state.DEFAULTS, steps=7))["unlearning"] == {"steps": 7}


def test_fraction_snapping():
    assert state.snap_fraction(0.0011) == 0.001
    assert state.snap_fraction(0.7) == 0.5
    assert state.snap_fraction(-1) == state.DEFAULTS["frac"]
