"""Sweeps: grid expansion, mean ± std, full costs per cell, resumption from the store, refusals."""

from __future__ import annotations

import math

import pytest

from core import config, selection, sweep
from core.errors import ConfigError
from core.store import RunStore
from tests.conftest import small_config

FAST = {"epochs": 3, "lr": 0.003, "batch_size": 64}


def sweep_config(**overrides):
    strategies = [{"name": "saps"}, {"name": "random", "fraction": 0.1}, {"name": "all"}]
    unlearning = {"steps": 3, "lr": "auto"}
    grid = {"seeds": [0], "fractions": [0.02, 0.05], "methods": ["masked_finetune"]}
    cfg = small_config(train=dict(FAST), unlearning=unlearning, strategies=strategies, **grid)
    cfg.update(overrides)
    return cfg


def test_grid_expansion_follows_the_registry():
    cfg = config.normalize(sweep_config(seeds=[0, 1], methods=["masked_finetune", "first_order"]), sweep=True)
    cells = sweep.sweep_cells(cfg)
    # saps takes each of "fractions", random keeps its own, all (a fixed mask) none: (2 + 1 + 1) × 2 × 2
    assert len(cells) == 16
    expected = {("saps", 0.02), ("saps", 0.05), ("random", 0.1), ("all", None)}
    assert {(c["strategy"]["name"], c["fraction"]) for c in cells} == expected
    assert len({sweep.cell_key(c) for c in cells}) == 16
    with pytest.raises(ConfigError) as err:
        sweep.sweep_cells(config.normalize(sweep_config(fractions=None), sweep=True))
    assert err.value.field == "fractions"


def test_summary_is_mean_and_sample_std_of_metrics_and_full_costs():
    point = {"label": "SAPS @ 10 %", "strategy": "saps", "largest": True, "fraction": 0.1}
    point.update(method="masked_finetune", method_label="masked fine-tuning")
    cells = [
        {
            **point,
            "seconds": s,
            "seconds_select": s / 2,
            "retrain_ratio": s / 10,
            "metrics": {"asr": a, "mia_auc": None},
        }
        for s, a in [(1.0, 0.2), (2.0, 0.4), (3.0, 0.9)]
    ]
    (row,) = sweep.summarize(cells)
    assert row["n"] == 3 and row["label"] == "SAPS @ 10 %" and row["mean"]["asr"] == pytest.approx(0.5)
    assert row["std"]["asr"] == pytest.approx(math.sqrt((0.3**2 + 0.1**2 + 0.4**2) / 2))
    assert row["mean"]["mia_auc"] is None and row["mean"]["seconds"] == pytest.approx(2.0)
    assert row["mean"]["seconds_select"] == pytest.approx(1.0) and row["std"]["seconds"] == pytest.approx(1.0)
    text = sweep.format_summary({"summary": [row]})
    assert "SAPS @ 10 %" in text and "0.500 ± 0.361" in text and "2.000 ± 1.000" in text


@pytest.mark.slow
def test_sweep_resumes_without_redoing_stored_cells(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "s")
    first = sweep.sweep(sweep_config(strategies=[{"name": "saps"}]), store=store)
    assert len(first["cells"]) == 2 and len(store.list_runs(kind="cell")) == 2
    for cell in first["cells"]:
        curvature = cell["seconds_reference"]["curvature"]
        assert curvature > 0 and cell["seconds_select_parts"]["curvature"] == curvature
        assert cell["seconds"] == pytest.approx(cell["seconds_select"] + cell["seconds_update"])
        assert cell["retrain_ratio"] == pytest.approx(cell["seconds"] / cell["seconds_reference"]["retrain"])
        assert cell["label"] == selection.strategy_label({"name": "saps", "largest": True}, cell["fraction"])
    calls = []
    real = sweep.run_cell
    monkeypatch.setattr(sweep, "run_cell", lambda cell, res=None: calls.append(cell) or real(cell, res))
    # a "restarted" larger sweep: the two saps cells are in the store, only the new ones run
    second = sweep.sweep(sweep_config(), store=store)
    assert len(second["cells"]) == 4 and len(calls) == 2
    assert {c["strategy"]["name"] for c in calls} == {"random", "all"}
    cached = [c for c in second["cells"] if c.get("cached")]
    assert len(cached) == 2 and cached[0]["metrics"] == first["cells"][0]["metrics"]
    assert len(store.list_runs(kind="cell")) == 4
    by_name = {c["strategy"]: c for c in second["cells"] if not c.get("cached")}
    # random (live) pays for its own liveness pass (cached from the first sweep: charged at the
    # seconds it took then), not for the curvature
    parts = by_name["random"]["seconds_select_parts"]
    assert parts["curvature"] == 0.0
    assert parts["liveness"] == by_name["random"]["seconds_reference"]["liveness"] > 0
    assert by_name["all"]["seconds_select_parts"]["curvature"] == 0.0 and by_name["all"]["dead_selected"] > 0
    for cell in by_name.values():  # the method's honesty flags travel with every cell
        assert isinstance(cell["log"]["guard_failed"], bool) and isinstance(cell["log"]["changed"], bool)
        assert cell["log"]["changed"] or cell["log"]["note"]
    assert by_name["random"]["dead_selected"] == 0
    expected = {("saps", 0.02), ("saps", 0.05), ("random", 0.1), ("all", None)}
    assert {(r["strategy"], r["fraction"]) for r in second["summary"]} == expected


def test_sweep_refuses_bad_input_and_missing_ray(tmp_path):
    store = RunStore(tmp_path / "s")
    with pytest.raises(ConfigError) as err:
        sweep.sweep(sweep_config(fractions=[0.0]), store=store)
    assert err.value.field == "fractions[0]"
    with pytest.raises(ConfigError) as err:
        sweep.sweep(sweep_config(methods=["magic"]), store=store)
    assert err.value.field == "methods[0]"
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="requirements-scale"):
            sweep.sweep(sweep_config(), store=store, executor="ray")
    assert store.list_runs() == []


def test_a_method_revision_keeps_old_keys_at_1_and_recomputes_cells_after_a_bump(tmp_path, monkeypatch):
    import dataclasses

    from core import unlearning
    from core.store import config_key

    cfg = config.normalize(sweep_config(strategies=[{"name": "all"}]), sweep=True)
    cell = sweep.sweep_cells(cfg)[0]
    # revision 1: the key is the recipe's hash, as before revisions existed (stores stay valid)
    assert sweep.cell_key(cell) == "cell-" + config_key({k: v for k, v in cell.items() if k != "device"})
    store = RunStore(tmp_path / "s")
    sweep.sweep(sweep_config(strategies=[{"name": "all"}]), store=store)
    calls = []
    real = sweep.run_cell
    monkeypatch.setattr(sweep, "run_cell", lambda c, res=None: calls.append(c) or real(c, res))
    assert all(
        c.get("cached") for c in sweep.sweep(sweep_config(strategies=[{"name": "all"}]), store=store)["cells"]
    )
    assert calls == []
    bumped = dataclasses.replace(unlearning.METHODS["masked_finetune"], revision=2)
    monkeypatch.setitem(unlearning.METHODS, "masked_finetune", bumped)
    assert sweep.cell_key(cell) != "cell-" + config_key({k: v for k, v in cell.items() if k != "device"})
    again = sweep.sweep(sweep_config(strategies=[{"name": "all"}]), store=store)
    assert len(calls) == 1 and not any(c.get("cached") for c in again["cells"])
