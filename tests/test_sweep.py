"""Sweeps: grid expansion, mean ± std, resumption from the store, executor refusal."""

from __future__ import annotations

import math

import pytest

from core import experiment
from core.errors import ConfigError
from core.store import RunStore
from tests.conftest import small_config

FAST = {"epochs": 3, "lr": 0.003, "batch_size": 64}


def sweep_config(**overrides):
    cfg = small_config(train=dict(FAST), unlearning={"steps": 3, "lr": "auto"}, seeds=[0],
                       fractions=[0.02, 0.05], methods=["iterative"],
                       strategies=[{"name": "saps"}, {"name": "random", "fraction": 0.1}, {"name": "all"}])  # fmt: skip
    cfg.update(overrides)
    return cfg


def test_grid_expansion_follows_the_contract():
    from core import config

    cfg = config.normalize(sweep_config(seeds=[0, 1], methods=["iterative", "first_order"]), sweep=True)
    cells = experiment.sweep_cells(cfg)
    # saps takes each of "fractions", random keeps its own, all has none: (2 + 1 + 1) × 2 methods × 2 seeds
    assert len(cells) == 16
    assert {(c["strategy"]["name"], c["fraction"]) for c in cells} == {
        ("saps", 0.02), ("saps", 0.05), ("random", 0.1), ("all", None)}  # fmt: skip
    assert len({experiment.cell_key(c) for c in cells}) == 16


def test_summary_is_mean_and_sample_std():
    cells = [{"strategy": "saps", "largest": True, "fraction": 0.1, "method": "iterative", "seconds": s,
              "retrain_ratio": s / 10, "metrics": {"asr": a, "mia_auc": None}}
             for s, a in [(1.0, 0.2), (2.0, 0.4), (3.0, 0.9)]]  # fmt: skip
    (row,) = experiment.summarize(cells)
    assert row["n"] == 3 and row["mean"]["asr"] == pytest.approx(0.5)
    assert row["std"]["asr"] == pytest.approx(math.sqrt(((0.3) ** 2 + 0.1**2 + 0.4**2) / 2))
    assert row["mean"]["mia_auc"] is None and row["mean"]["seconds"] == pytest.approx(2.0)
    text = experiment.format_summary({"summary": [row]})
    assert "saps" in text and "0.500 ± 0.361" in text


@pytest.mark.slow
def test_sweep_resumes_without_redoing_stored_cells(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "s")
    first = experiment.sweep(sweep_config(strategies=[{"name": "saps"}]), store=store)
    assert len(first["cells"]) == 2
    assert len(store.list_runs(kind="cell")) == 2
    calls = []
    real = experiment.run_cell
    monkeypatch.setattr(experiment, "run_cell", lambda cell, res=None: calls.append(cell) or real(cell, res))
    # a "restarted" larger sweep: the two saps cells are in the store, only the new ones run
    second = experiment.sweep(sweep_config(), store=store)
    assert len(second["cells"]) == 4 and len(calls) == 2
    assert {c["strategy"]["name"] for c in calls} == {"random", "all"}
    cached = [c for c in second["cells"] if c.get("cached")]
    assert len(cached) == 2 and cached[0]["metrics"] == first["cells"][0]["metrics"]
    assert len(store.list_runs(kind="cell")) == 4
    for c in second["cells"]:
        assert set(c) >= {"seed", "strategy", "largest", "fraction", "method", "metrics", "seconds"}
    assert {(r["strategy"], r["fraction"]) for r in second["summary"]} == {
        ("saps", 0.02), ("saps", 0.05), ("random", 0.1), ("all", None)}  # fmt: skip


def test_sweep_refuses_bad_input_and_missing_ray(tmp_path):
    store = RunStore(tmp_path / "s")
    with pytest.raises(ConfigError) as err:
        experiment.sweep(sweep_config(fractions=[0.0]), store=store)
    assert err.value.field == "fractions[0]"
    with pytest.raises(ConfigError) as err:
        experiment.sweep(sweep_config(methods=["magic"]), store=store)
    assert err.value.field == "methods[0]"
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="requirements-scale"):
            experiment.sweep(sweep_config(), store=store, executor="ray")
    assert store.list_runs() == []
