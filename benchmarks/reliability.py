"""What the tool survives: fuzzed configs, injected faults, concurrent writers to one store.

    python benchmarks/reliability.py [--fuzz 500] [--writers 4] [--out benchmarks/results/reliability.json]

Every fuzzed config must either validate or be refused with a ConfigError/DataError naming
a field; anything else counts as a crash. Faults: a truncated and an altered checkpoint, a
process killed mid-run, a corrupt database file. Concurrent writers: processes claiming the
same cell keys in one store; no row may be lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import config as config_mod  # noqa: E402
from core import experiment  # noqa: E402
from core.errors import ConfigError, SapsError  # noqa: E402
from core.store import RunStore  # noqa: E402

FIELDS = {
    "dataset": None,
    "model": None,
    "seed": None,
    "device": None,
    "root": None,
    "train_size": None,
    "scenario.kind": None,
    "scenario.size": None,
    "scenario.target": None,
    "scenario.patch": None,
    "scenario.position": None,
    "scenario.fraction": None,
    "scenario.to": None,
    "scenario.class": None,
    "scenario.indices": None,
    "train.epochs": None,
    "train.lr": None,
    "train.batch_size": None,
    "curvature.method": None,
    "curvature.data": None,
    "strategies": None,
    "unlearning.method": None,
    "unlearning.steps": None,
    "unlearning.lr": None,
    "retrain": None,
}


def random_value(rng: random.Random, depth: int = 0):
    kinds = ["none", "bool", "int", "bigint", "float", "nan", "str", "list", "dict", "valid"]
    kind = rng.choice(kinds if depth < 2 else kinds[:7])
    return {
        "none": lambda: None,
        "bool": lambda: rng.random() < 0.5,
        "int": lambda: rng.randint(-5, 70),
        "bigint": lambda: rng.randint(-(10**12), 10**12),
        "float": lambda: rng.uniform(-2, 2),
        "nan": lambda: rng.choice([float("nan"), float("inf"), -float("inf")]),
        "str": lambda: rng.choice(["", "cnn", "digits", "saps", "auto", "x" * 50, "../../etc", "exact"]),
        "list": lambda: [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
        "dict": lambda: {rng.choice(["name", "kind", "fraction", "a"]): random_value(rng, depth + 1)},
        "valid": lambda: rng.choice([0, 1, 0.02, "backdoor", "first_order", [{"name": "saps"}], True]),
    }[kind]()


def fuzz(n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    counts = {"valid": 0, "refused_with_field": 0, "refused_other": 0, "crashed": 0}
    crashes = []
    for _ in range(n):
        cfg: dict = {"train": {"epochs": 1}, "strategies": []}
        for field in rng.sample(list(FIELDS), rng.randint(1, 3)):
            node = cfg
            *parents, last = field.split(".")
            for p in parents:
                node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else node
            node[last] = random_value(rng)
        try:
            experiment.prepare(config_mod.normalize(cfg))
            counts["valid"] += 1
        except ConfigError as e:
            counts["refused_with_field" if e.field else "refused_other"] += 1
        except SapsError:
            counts["refused_other"] += 1
        except Exception as e:  # a traceback a user would see
            counts["crashed"] += 1
            crashes.append({"config": repr(cfg)[:300], "error": f"{type(e).__name__}: {e}"[:300]})
    return {"configs": n, **counts, "crash_examples": crashes[:5]}


def faults(tmp: Path) -> list[dict]:
    results = []
    cfg = {
        "train": {"epochs": 2},
        "strategies": [],
        "retrain": False,
        "device": "cpu",
        "metrics": {"mia": False, "relearn": False},
    }
    for fault in ("truncate", "alter"):
        store = RunStore(tmp / f"store-{fault}")
        experiment.run(cfg, store=store)
        ck = next(store.checkpoints.glob("original-*.safetensors"))
        raw = bytearray(ck.read_bytes())
        if fault == "truncate":
            raw = raw[: len(raw) // 2]
        else:
            raw[-5] ^= 0xFF
        ck.write_bytes(bytes(raw))
        try:
            experiment.run(cfg, store=store)
            ok, message = False, "run succeeded on a damaged checkpoint"
        except SapsError as e:
            row = store.list_runs()[0]
            ok, message = row["status"] == "failed", str(e)[:160]
        results.append(
            {
                "fault": {"truncate": "checkpoint truncated", "alter": "checkpoint altered"}[fault],
                "survived": ok,
                "message": message,
            }
        )

    store_dir = tmp / "store-kill"
    cfg_path = tmp / "kill.json"
    cfg_path.write_text(json.dumps({**cfg, "train": {"epochs": 2000}}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core",
            "run",
            "--config",
            str(cfg_path),
            "--store",
            str(store_dir),
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (store_dir / "runs.db").exists():
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows = RunStore(store_dir).list_runs()
    ok = len(rows) == 1 and rows[0]["status"] == "failed"
    results.append(
        {"fault": "process killed mid-run", "survived": ok, "message": rows[0]["error"] if rows else "no row"}
    )

    bad = tmp / "store-corrupt"
    bad.mkdir()
    (bad / "runs.db").write_bytes(os.urandom(4096))
    try:
        RunStore(bad).list_runs()
        ok, message = False, "opened a corrupt database"
    except SapsError as e:
        ok, message = True, str(e)[:160]
    results.append({"fault": "corrupt database file", "survived": ok, "message": message})
    return results


def concurrent_writers(tmp: Path, writers: int, keys: int = 50) -> dict:
    code = textwrap.dedent(f"""
        from core.store import RunStore
        s = RunStore({str(tmp / "store-conc")!r})
        for i in range({keys}):
            rid = s.claim(f"cell-{{i}}", {{"i": i}})
            if rid is not None:
                s.finish(rid, {{"i": i}}, 0.0)
    """)
    RunStore(tmp / "store-conc")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for _ in range(writers)]
    codes = [p.wait() for p in procs]
    rows = RunStore(tmp / "store-conc").list_runs(limit=100_000)
    done_keys = [r["key"] for r in rows if r["status"] == "done"]
    return {
        "writers": writers,
        "keys": keys,
        "exit_codes": codes,
        "rows": len(rows),
        "lost": keys - len(set(done_keys)),
        "duplicated": len(done_keys) - len(set(done_keys)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        out = {
            "benchmark": "reliability",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "fuzz": fuzz(args.fuzz),
            "faults": faults(tmp),
            "concurrent_writers": concurrent_writers(tmp, args.writers),
        }
    f = out["fuzz"]
    print(
        f"fuzzed configs: {f['configs']}: {f['valid']} valid, {f['refused_with_field']} refused "
        f"naming a field, {f['refused_other']} refused otherwise, {f['crashed']} crashed"
    )
    for r in out["faults"]:
        print(f"fault {r['fault']:<26} survived={r['survived']}  ({r['message'][:90]})")
    c = out["concurrent_writers"]
    print(
        f"{c['writers']} concurrent writers × {c['keys']} cells: {c['rows']} rows, "
        f"{c['lost']} lost, {c['duplicated']} duplicated"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
