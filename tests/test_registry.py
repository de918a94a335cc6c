"""Adding a selection strategy is ONE entry in core.selection.STRATEGIES and nothing else: config
validation accepts it, `python -m core strategies` lists it, the dashboard offers it, and a run
uses it with its label on the result row (README "Extend it" shows the same entry)."""

from __future__ import annotations

import json

import pytest

from core import config, experiment, selection
from core.__main__ import main
from core.functional import trainable
from tests.ui.conftest import app, assert_clean


def _bias_first(model, request):
    """Biases outrank weights; within each, larger |θ| first (any deterministic rule will do)."""
    return {n: p.detach().abs() + (10.0 if n.endswith("bias") else 0.0) for n, p in trainable(model)}


@pytest.fixture
def toy(monkeypatch):
    entry = selection.Strategy(
        name="bias_first",
        label="biases first",
        description="rank biases above weights, then by |θ|",
        score=_bias_first,
    )
    monkeypatch.setitem(selection.STRATEGIES, "bias_first", entry)
    return entry


def test_one_registry_entry_reaches_config_cli_dashboard_and_runs(toy, capsys):
    # config validation
    cfg = config.normalize({"strategies": [{"name": "bias_first", "fraction": 0.005}]})
    assert cfg["strategies"] == [{"name": "bias_first", "fraction": 0.005, "largest": True}]
    with pytest.raises(config.ConfigError) as err:
        config.normalize({"strategies": [{"name": "bias_first", "colour": "red"}]})
    assert err.value.field == "strategies[0].colour"

    # the CLI lists it
    assert main(["strategies", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["bias_first"]["label"] == "biases first" and listed["bias_first"]["budgeted"]

    # the dashboard offers it
    at = app("pages/4_Unlearn.py", strategies="bias_first")
    assert_clean(at)
    widget = at.multiselect(key="w_strategies_unlearn")
    assert "biases first" in widget.options and widget.value == ["bias_first"]

    # the one mask path ranks by the entry's score: 0.5 % of the cnn (69 of 13,706) are all biases (122)
    from core import models
    from core.artifacts import prepare

    prepared = prepare(cfg)
    model = models.build(cfg["model"], prepared.dataset, seed=0)
    mask = selection.mask_for(cfg["strategies"][0], model, forget_set=prepared.forget_set)
    k = round(0.005 * sum(p.numel() for p in model.parameters()))
    assert sum(int(m.sum()) for m in mask.values()) == k
    assert all(not m.any() for n, m in mask.items() if not n.endswith("bias"))

    # and a run uses it, its label travelling on the result row
    run = experiment.run({**cfg, "train": {**cfg["train"], "epochs": 2}, "retrain": False})
    (row,) = run["strategies"]
    assert row["label"] == selection.strategy_label(row["strategy"], 0.005)
    assert row["label"].startswith("biases first") and row["n_selected"] == k
