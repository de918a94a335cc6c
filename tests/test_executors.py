"""Sweep executors: Ray gives the local executor's results; concurrent sweeps share one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import sweep
from core.errors import ConfigError
from core.executors import check_executor
from core.store import RunStore
from tests.conftest import small_config

ROOT = Path(__file__).resolve().parents[1]


def tiny_sweep(**overrides) -> dict:
    strategies = [{"name": "saps"}, {"name": "random"}]
    unlearning = {"method": "masked_finetune", "steps": 3, "lr": 0.01}
    grid = {"seeds": [0], "fractions": [0.02, 0.1], "methods": ["masked_finetune"]}
    cfg = small_config(
        train={"epochs": 3}, retrain=True, strategies=strategies, unlearning=unlearning, **grid
    )
    cfg.update(overrides)
    return cfg


def _metrics_by_cell(result: dict) -> dict:
    return {(c["seed"], c["strategy"], c["fraction"], c["method"]): c["metrics"] for c in result["cells"]}


def test_unknown_executor_and_address():
    with pytest.raises(ConfigError, match="executor"):
        check_executor("dask", None)
    with pytest.raises(ConfigError, match="--address"):
        check_executor("local", "10.0.0.1:6379")


@pytest.mark.slow
def test_ray_sweep_equals_local(tmp_path):
    pytest.importorskip("ray", reason="ray not installed (requirements-scale.txt)")
    cfg = tiny_sweep(seeds=[0, 1])
    local = sweep.sweep(cfg, store=RunStore(tmp_path / "local"))
    remote = sweep.sweep(cfg, store=RunStore(tmp_path / "ray"), executor="ray")
    assert len(remote["cells"]) == len(local["cells"]) == 8
    a, b = _metrics_by_cell(local), _metrics_by_cell(remote)
    assert a.keys() == b.keys()
    for k in a:
        for name in ("test_acc", "forget_acc", "asr", "mia_auc"):
            assert a[k][name] == pytest.approx(b[k][name], abs=1e-6), (k, name)
    rows = RunStore(tmp_path / "ray").list_runs(kind="cell")
    assert len(rows) == 8 and all(r["status"] == "done" for r in rows), "the driver stored every cell"


@pytest.mark.slow
def test_two_sweeps_on_one_store_store_each_cell_once(tmp_path):
    cfg_path = tmp_path / "sweep.json"
    cfg_path.write_text(json.dumps(tiny_sweep(seeds=[0, 1])))
    store = tmp_path / "store"
    RunStore(store)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "core",
        "sweep",
        "--config",
        str(cfg_path),
        "--store",
        str(store),
        "--json",
        "--quiet",
    ]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, **pipes) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    assert all(len(r["cells"]) == 8 for r in results)
    cells = RunStore(store).list_runs(kind="cell", limit=1000)
    done = [r["key"] for r in cells if r["status"] == "done"]
    assert len(done) == len(set(done)) == 8, "no cell lost or stored twice"
    assert _metrics_by_cell(results[0]) == _metrics_by_cell(results[1])
