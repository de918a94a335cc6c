"""experiment.run with strategies: result shape, cached curvature, refusals before storing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core import experiment, metrics
from core.errors import ConfigError
from core.store import RunStore
from tests.conftest import small_config

FAST = {"epochs": 3, "lr": 0.003, "batch_size": 64}


def fast_config(**overrides):
    cfg = small_config(train=dict(FAST), **overrides)
    cfg.setdefault("unlearning", {"method": "iterative", "steps": 5, "lr": "auto"})
    return cfg


@pytest.mark.slow
def test_run_with_strategies_fills_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "CURVE_SAMPLES", None)  # curve points on whole sets: comparable below
    store = RunStore(tmp_path / "s")
    cfg = fast_config(strategies=[{"name": "saps", "fraction": 0.05}, {"name": "saps", "fraction": 0.05, "largest": False},
                                  {"name": "random", "fraction": 0.05}, {"name": "all"}])  # fmt: skip
    stages = []
    result = experiment.run(cfg, store=store, progress=lambda s, f, m: stages.append((s, f)))
    assert [s["name"] for s in result["strategies"]] == ["saps", "saps", "random", "all"]
    n_params = result["n_parameters"]
    for row in result["strategies"]:
        for k in metrics.METRIC_KEYS + ("backdoor_removal", "test_acc_drop"):
            assert k in row["metrics"]
        assert row["seconds"] > 0 and row["retrain_ratio"] == pytest.approx(
            row["seconds"] / result["seconds"]["retrain"]
        )
        assert row["method"] == "iterative" and row["grad_evals"] > 0
    for row, m in ((r, r["metrics"]) for r in result["strategies"]):
        # the per-step curve starts at θ* and ends at the returned model (independent evaluations)
        curve = row["curve"]
        assert set(curve) == {"step", "test_acc", "retain_acc", "forget_acc", "asr"}
        assert (
            curve["step"][0] == 0
            and curve["step"] == sorted(curve["step"])
            and curve["step"][-1] == row["steps"]
        )
        assert all(len(v) == len(curve["step"]) for v in curve.values())
        assert curve["test_acc"][0] == pytest.approx(result["original"]["test_acc"])
        assert curve["asr"][0] == pytest.approx(result["original"]["asr"])
        for k in ("test_acc", "forget_acc", "asr"):
            assert curve[k][-1] == pytest.approx(m[k])
        assert row["curve_seconds"] > 0
    assert result["strategies"][0]["n_selected"] == round(0.05 * n_params)
    assert result["strategies"][3]["n_selected"] == n_params and result["strategies"][3]["fraction"] is None
    assert result["strategies"][1]["dead_selected"] == 0  # smallest skips dead parameters
    assert result["seconds"]["curvature"] > 0 and result["curvature_cached"] is False
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # backdoor removal is consistent with the asr values
    o, r, s = result["original"]["asr"], result["retrained"]["asr"], result["strategies"][0]["metrics"]
    assert s["backdoor_removal"] == pytest.approx((o - s["asr"]) / (o - r))
    again = experiment.run(cfg, store=store)
    assert again["curvature_cached"] is True
    assert store.get(again["run_id"])["status"] == "done"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"unlearning": {"method": "magic"}}, "unlearning.method"),
        ({"unlearning": {"lr": 0}}, "unlearning.lr"),
        ({"unlearning": {"damping": -1}}, "unlearning.damping"),
        ({"unlearning": {"colour": 1}}, "unlearning.colour"),
        ({"strategies": [{"name": "oracle"}]}, "strategies[0].name"),
        ({"strategies": [{"name": "saps", "fraction": 1.5}]}, "strategies[0].fraction"),
        ({"strategies": [{"name": "saps", "fraction": 1e-9}]}, "fraction"),
    ],
)
def test_bad_input_is_refused_before_anything_is_stored(tmp_path, change, field):
    store = RunStore(tmp_path / "s")
    with pytest.raises(ConfigError) as err:
        experiment.run(fast_config(**change), store=store)
    assert err.value.field == field
    assert store.list_runs() == []


def test_cli_exits_2_naming_the_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(fast_config(unlearning={"lr": -1})))
    proc = subprocess.run([sys.executable, "-m", "core", "run", "--config", str(path), "--store", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "unlearning.lr" in proc.stderr and "Traceback" not in proc.stderr
    assert RunStore(tmp_path / "s").list_runs() == []


def test_example_configs_are_valid():
    from pathlib import Path

    from core import config

    folder = Path(__file__).resolve().parents[1] / "assets" / "configs"
    names = {p.name for p in folder.glob("*.json")}
    assert "digits-backdoor.json" in names
    for p in folder.glob("*.json"):
        cfg = json.loads(p.read_text())
        config.normalize(cfg, sweep=any(k in cfg for k in config.SWEEP_KEYS))


@pytest.mark.slow
def test_default_unlearning_removes_most_of_a_backdoor_with_a_saps_mask():
    """The issue's acceptance: on digits backdoor (2 seeds) the default configuration with a
    SAPS mask below 100 % removes ≥ 50 % of the backdoor, test accuracy ≥ original − 0.02."""
    for seed in (0, 1):
        cfg = small_config(seed=seed, strategies=[{"name": "saps", "fraction": 0.01}],
                           metrics={"mia": False, "relearn": False})  # fmt: skip
        cfg.pop("train")  # the project's default training (lr 0.003: a reliable backdoor)
        result = experiment.run(cfg)
        assert result["config"]["unlearning"]["method"] == "iterative"
        o, r = result["original"], result["retrained"]
        assert o["asr"] >= 0.9 and r["asr"] <= 0.05
        m = result["strategies"][0]["metrics"]
        removal = (o["asr"] - m["asr"]) / (o["asr"] - r["asr"])  # independent of compare()
        assert removal >= 0.5, (seed, removal)
        assert m["test_acc"] >= o["test_acc"] - 0.02, seed
