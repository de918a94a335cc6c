"""The dashboard's choices come from the core registries: one entry there, offered here."""

from __future__ import annotations

import dataclasses

import pytest

from core import selection
from tests.ui.conftest import app, assert_clean
from ui import choices, state


@pytest.fixture
def toy_strategy(monkeypatch):
    """A strategy added with ONE registry entry (and nothing else): rank by θ² ."""
    toy = dataclasses.replace(
        selection.STRATEGIES["magnitude"],
        name="toy_square",
        label="toy θ²",
        description="rank by θ² (a test entry)",
        score=lambda model, request: {n: p.detach() ** 2 for n, p in model.named_parameters()},
        variant=None,
    )
    monkeypatch.setitem(selection.STRATEGIES, "toy_square", toy)
    return toy


def test_every_registry_entry_is_a_choice_with_its_label():
    keys = choices.strategies()
    assert {e["name"] for e in keys.values()} == set(selection.STRATEGIES)
    labels = choices.strategy_labels()
    for key, entry in keys.items():
        assert labels[key] == selection.strategy_label(entry)
    # a reversed ranking is offered only when the registry labels it as a different variant
    assert keys["saps_smallest"] == {"name": "saps", "largest": False}
    assert labels["saps_smallest"] != labels["saps"]
    assert "random_smallest" not in keys
    # fixed masks take no budget, budgeted ones get the fraction
    entries = choices.strategy_entries(["saps_smallest", "all"], 0.05)
    assert entries == [{"name": "saps", "largest": False, "fraction": 0.05}, {"name": "all"}]


def test_methods_scenarios_and_defaults_come_from_their_registries():
    from core.scenarios import SCENARIOS
    from core.unlearning import METHODS

    offered = choices.methods()
    assert set(offered) == {n for n, m in METHODS.items() if m.uses_mask}
    assert "retrain" not in offered and offered["masked_finetune"] == METHODS["masked_finetune"].label
    assert choices.labels("scenarios") == {n: sc.label for n, sc in SCENARIOS.items()}
    assert choices.default_method({"kind": "backdoor"}) == "masked_finetune"
    assert choices.default_method({"kind": "random_samples"}) == "neggrad"
    assert choices.default_method({"kind": "indices", "corruption": "remove"}) == "neggrad"


def test_a_toy_strategy_is_offered_and_runs_through_the_config(toy_strategy):
    from core import config as core_config

    assert "toy_square" in choices.strategies()
    assert choices.strategy_labels()["toy_square_smallest"] == "toy θ² (smallest)"
    cfg = core_config.normalize(state.build_config(dict(state.DEFAULTS, strategies=["toy_square"])))
    assert cfg["strategies"][0]["name"] == "toy_square" and cfg["strategies"][0]["fraction"] == 0.02
    settings, problems = state.from_query({"strategies": "toy_square,saps"})
    assert problems == [] and settings["strategies"] == ["toy_square", "saps"]


def test_a_toy_strategy_is_offered_by_the_unlearn_page(toy_strategy):
    at = app("pages/4_Unlearn.py", strategies="toy_square")
    assert_clean(at)
    widget = at.multiselect(key="w_strategies_unlearn")
    assert "toy θ²" in widget.options and widget.value == ["toy_square"]
    assert "toy θ²" in widget.help
