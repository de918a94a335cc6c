"""Run store: rows end done or failed, checkpoints are atomic and tamper-evident."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from core.errors import StoreError
from core.store import RunStore, config_key


def test_row_life_cycle(tmp_path):
    store = RunStore(tmp_path)
    with store.recording({"a": 1}, key="k1") as rec:
        store.finish(rec["id"], {"ok": True}, 1.5)
        rec["finished"] = True
    row = store.get(rec["id"])
    assert row["status"] == "done" and row["result"] == {"ok": True} and row["config"] == {"a": 1}
    assert store.find_done("k1")["id"] == rec["id"]
    with pytest.raises(RuntimeError), store.recording({"a": 2}) as rec2:
        raise RuntimeError("boom")
    failed = store.get(rec2["id"])
    assert failed["status"] == "failed" and "boom" in failed["error"]
    assert [r["id"] for r in store.list_runs()] == [rec2["id"], rec["id"]]


def test_config_key_is_order_independent():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})


def test_checkpoint_round_trip_and_tampering(tmp_path):
    store = RunStore(tmp_path)
    state = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    path = store.save_checkpoint("m", state)
    loaded = store.load_checkpoint("m")
    assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["b"], state["b"])
    assert not [p for p in os.listdir(store.checkpoints) if p.endswith(".tmp")]
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(StoreError, match="corrupt or truncated"):
        store.load_checkpoint("m")
    altered = bytearray(raw)
    altered[-1] ^= 0xFF  # flip bits in the last tensor's data
    path.write_bytes(bytes(altered))
    with pytest.raises(StoreError, match="altered"):
        store.load_checkpoint("m")
    with pytest.raises(StoreError, match="not found"):
        store.load_checkpoint("missing")


def test_killed_process_leaves_failed_row(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from core.store import RunStore
        s = RunStore({str(tmp_path)!r})
        with s.recording({{"x": 1}}) as rec:
            print(rec["id"], flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    run_id = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    row = RunStore(tmp_path).get(run_id)
    assert row["status"] == "failed" and "process ended" in row["error"]


def test_unreadable_database(tmp_path):
    db = tmp_path / "runs.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        RunStore(tmp_path)


def test_claim_is_exclusive_across_processes(tmp_path):
    """Two processes claiming the same 40 keys: each key is computed and stored exactly once."""
    code = textwrap.dedent(f"""
        import sys
        from core.store import RunStore
        s = RunStore({str(tmp_path)!r})
        for i in range(40):
            rid = s.claim(f"cell-{{i}}", {{"i": i}})
            if rid is not None:
                s.finish(rid, {{"i": i, "by": sys.argv[1]}}, 0.0)
    """)
    RunStore(tmp_path)  # create the schema once
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], cwd=os.getcwd()) for n in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    rows = RunStore(tmp_path).list_runs(limit=1000)
    done = [r for r in rows if r["status"] == "done"]
    assert sorted(r["key"] for r in done) == sorted(f"cell-{i}" for i in range(40))
    assert len(rows) == 40, "no duplicated rows"


def test_claim_skips_done_and_takes_over_dead(tmp_path):
    store = RunStore(tmp_path)
    rid = store.claim("k", {})
    assert rid is not None and store.claim("k", {"again": 1}) is not None  # own stale row
    assert store.get(rid)["status"] == "failed"
    rid2 = store.list_runs()[0]["id"]
    store.finish(rid2, {}, 0.0)
    assert store.claim("k", {}) is None


def test_artifact_round_trip_keeps_its_meta_and_refuses_half_written(tmp_path):
    store = RunStore(tmp_path)
    assert store.load_artifact("a") is None
    scores = {"w": torch.randn(3, 4), "live": torch.tensor([True, False])}
    store.save_artifact("a", scores, {"seconds": 1.25})
    tensors, meta = store.load_artifact("a")
    assert meta == {"seconds": 1.25} and torch.equal(tensors["w"], scores["w"])
    assert tensors["live"].dtype == torch.bool and torch.equal(tensors["live"], scores["live"])
    (store.checkpoints / "a.json").unlink()  # a checkpoint without its sidecar is not an artifact
    assert store.load_artifact("a") is None
    store.save_artifact("b", scores, {"seconds": 2.0})
    (store.checkpoints / "b.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        store.load_artifact("b")
    assert not [p for p in os.listdir(store.checkpoints) if p.endswith(".tmp")]
