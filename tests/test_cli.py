"""`python -m core`: JSON on stdout, exit 2 with one line naming the field on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import metrics, selection
from core.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
FAST = {"train": {"epochs": 3}, "strategies": [], "device": "cpu"}


def cli(*args, check_rc=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(
        [sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    if check_rc is not None:
        assert p.returncode == check_rc, p.stderr
    return p


def cli_inproc(capsys, *args):
    """The same entry point in-process (fast): returns (exit code, stdout, stderr)."""
    from core.__main__ import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def write(tmp_path, cfg, name="cfg.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return str(path)


def test_run_json_carries_the_result_contract(tmp_path):
    store = tmp_path / "store"
    cfg = {**FAST, "strategies": [{"name": "random", "fraction": 0.05}], "unlearning": {"steps": 2}}
    p = cli("run", "--config", write(tmp_path, cfg), "--json", "--store", str(store), check_rc=0)
    result = json.loads(p.stdout)  # exactly one JSON document
    top = {"config", "run_id", "scenario", "n_parameters", "device", "original", "retrained", "history"}
    assert top | {"seconds", "curvature_cached", "strategies"} <= set(result)
    assert set(result["seconds"]) == {"train", "retrain", "curvature", "liveness", "total"}
    assert set(metrics.METRIC_KEYS) <= set(result["original"]) and set(metrics.METRIC_KEYS) <= set(
        result["retrained"]
    )
    (row,) = result["strategies"]
    assert row["label"] == selection.strategy_label(row["strategy"], 0.05)
    assert row["seconds"] == pytest.approx(row["seconds_select"] + row["seconds_update"])
    assert row["retrain_ratio"] == pytest.approx(row["seconds"] / result["seconds"]["retrain"])
    assert 0 <= result["original"]["asr"] <= 1
    assert "%" in p.stderr, "progress goes to stderr"
    rows = RunStore(store).list_runs()
    assert len(rows) == 1 and rows[0]["status"] == "done"
    shown = json.loads(cli("runs", "show", str(rows[0]["id"]), "--store", str(store), check_rc=0).stdout)
    assert shown["result"]["original"] == result["original"]
    listed = json.loads(cli("runs", "list", "--json", "--store", str(store), check_rc=0).stdout)
    assert listed[0]["id"] == rows[0]["id"]


@pytest.mark.parametrize(
    "cfg, field",
    [
        ({"dataset": "imagenet"}, "dataset"),
        ({"scenario": {"kind": "backdoor", "size": -5}}, "scenario.size"),
        ({"scenario": {"kind": "backdoor", "target": 10}}, "scenario.target"),
        ({"strategies": [{"name": "nope"}]}, "strategies[0].name"),
        ({"strategies": [{"name": "saps", "fraction": 2}]}, "strategies[0].fraction"),
        ({"unlearning": {"method": "magic"}}, "unlearning.method"),
        ({"unlearning": {"lr": -1}}, "unlearning.lr"),
        ({"dataset": "mnist", "root": "/nonexistent/folder"}, "mnist"),
        ({"dataset": "fashion-mnist", "root": "/nonexistent/folder"}, "fashion-mnist: root"),
        ({"device": "cpu:abc"}, "device"),
        ({"unlearning": {"device": "tpu"}}, "unlearning.device"),
        ({"strategies": [{"name": "saps"}]}, "strategies[0].fraction"),
        ({"strategies": [{"name": "saps", "fraction": 0.1, "quantile": 0.5}]}, "strategies[0].quantile"),
        (
            {"strategies": [{"name": "magnitude", "quantile": 0.5, "threshold": 0.1}]},
            "strategies[0].threshold",
        ),
        ({"scenario": {"kind": "label_flip", "fraction": 0.1, "size": 10}}, "scenario.size"),
        ({"scenario": {"kind": "backdoor", "value": float("inf")}}, "scenario.value"),
    ],
)
def test_bad_config_exits_2_and_stores_nothing(tmp_path, capsys, cfg, field):
    store = tmp_path / "store"
    args = ("run", "--config", write(tmp_path, {**FAST, **cfg}), "--store", str(store), "--quiet")
    rc, _, err = cli_inproc(capsys, *args)
    assert rc == 2
    assert field in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not store.exists() or RunStore(store).list_runs() == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the device is valid here")
@pytest.mark.parametrize(
    "cfg", [{"device": "cuda"}, {"device": "cuda:1"}, {"unlearning": {"device": "cuda"}}]
)
def test_an_absent_device_exits_2_before_the_store_records(tmp_path, capsys, cfg):
    store = tmp_path / "store"
    rc, _, err = cli_inproc(
        capsys, "run", "--config", write(tmp_path, {**FAST, **cfg}), "--store", str(store)
    )
    assert rc == 2 and "device" in err and "not available" in err and "Traceback" not in err
    assert not store.exists() or RunStore(store).list_runs() == []


def test_an_empty_threshold_budget_names_the_threshold(tmp_path, capsys):
    cfg = {**FAST, "strategies": [{"name": "saps", "threshold": 1e9}], "retrain": False}
    rc, _, err = cli_inproc(capsys, "run", "--config", write(tmp_path, cfg), "--store", str(tmp_path / "s"))
    assert rc == 2 and "threshold: " in err and "selects no parameter; lower the threshold" in err


def test_curvature_out_under_a_file_exits_2_before_training(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    out = str(tmp_path / "afile" / "scores.npz")
    args = ("curvature", "--config", write(tmp_path, FAST), "--out", out, "--store", str(tmp_path / "s"))
    rc, _, err = cli_inproc(capsys, *args)
    assert rc == 2 and "--out" in err and "is a file" in err
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s" / "checkpoints").glob("original-*"))


@pytest.mark.parametrize(
    "args, flag",
    [
        (("runs", "list", "--limit", "-1"), "--limit"),
        (("runs", "list", "--limit", "x"), "--limit"),
        (("forget-quality", "--config", "c.json", "--workers", "0"), "--workers"),
    ],
)
def test_counts_below_one_exit_2_naming_the_flag(capsys, args, flag):
    rc, _, err = cli_inproc(capsys, *args)
    assert rc == 2 and flag in err and "integer ≥ 1" in err


def test_bad_arguments_exit_2(tmp_path, capsys):
    p = cli("run", "--config", str(tmp_path / "missing.json"))  # a real process: real exit code
    assert p.returncode == 2 and "missing.json" in p.stderr and "Traceback" not in p.stderr
    assert cli_inproc(capsys, "run")[0] == 2
    assert cli_inproc(capsys, "runs", "show", "999", "--store", str(tmp_path))[0] == 2
    assert cli_inproc(capsys, "frobnicate")[0] == 2


def test_models_and_datasets_listing(capsys):
    models = json.loads(cli_inproc(capsys, "models", "--json")[1])
    cnn = next(r for r in models if r.get("model") == "cnn" and r["dataset"] == "digits")
    assert cnn["parameters"] == 13706
    datasets = json.loads(cli_inproc(capsys, "datasets", "--json")[1])
    digits = next(r for r in datasets if r["name"] == "digits")
    assert digits["available"] and digits["n_train"] == 1347
    mnist = next(r for r in datasets if r["name"] == "mnist")
    assert mnist["available"] is False and "root" in mnist["note"]


def test_error_line_starts_on_its_own_line_after_the_progress_bar(tmp_path, capsys):
    # every training sample forgotten: D_r is empty, which only the built scenario shows
    cfg = {**FAST, "scenario": {"kind": "random_samples", "size": 1347}, "unlearning": {"method": "neggrad"}}
    rc, out, err = cli_inproc(capsys, "run", "--config", write(tmp_path, cfg), "--store", str(tmp_path / "s"))
    assert rc == 2 and out == ""
    assert "%" in err, "the progress bar had started"
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("error: scenario.size"), err


def test_registry_lists_show_a_toy_strategy_added_with_one_entry(capsys, monkeypatch):
    described = {"name": "toy", "label": "toy (bias first)", "description": "biases outrank weights"}
    toy = selection.Strategy(**described, score=lambda m, r: {}, options={"bias_score": 1.0})
    monkeypatch.setitem(selection.STRATEGIES, "toy", toy)
    rc, out, _ = cli_inproc(capsys, "strategies", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rc == 0 and list(rows) == list(selection.STRATEGIES)
    assert rows["toy"] == {**described, "needs": [], "options": {"bias_score": 1.0}, "budgeted": True}
    assert rows["saps"]["needs"] == ["curvature"] and rows["all"]["budgeted"] is False
    rc, out, _ = cli_inproc(capsys, "strategies")
    assert rc == 0 and "toy (bias first)" in out and "SAPS (largest diag H)" in out


LISTS = [("methods", "core.unlearning", "METHODS"), ("scenarios", "core.scenarios", "SCENARIOS")]
LISTS += [("estimators", "core.curvature", "ESTIMATORS")]


@pytest.mark.parametrize("command, module, registry", LISTS)
def test_every_registry_is_listed_with_its_labels(capsys, command, module, registry):
    import importlib

    entries = getattr(importlib.import_module(module), registry)
    rc, out, _ = cli_inproc(capsys, command, "--json")
    rows = json.loads(out)
    assert rc == 0 and [r["name"] for r in rows] == list(entries)
    for r in rows:
        assert r["label"] == entries[r["name"]].label and r["description"] == entries[r["name"]].description


def test_forget_quality_bad_input_exits_2(tmp_path, capsys):
    rc, out, err = cli_inproc(capsys, "forget-quality", "--config", write(tmp_path, FAST), "--models", "1")
    assert rc == 2 and out == "" and "--models" in err and len(err.strip().splitlines()) == 1
