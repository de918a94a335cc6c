"""Does one unlearning default work beyond 8×8 digits? The default method at its registry
defaults on digits and on all 60,000 Fashion-MNIST images, every cost counted.

    python benchmarks/transfer.py                         (all scenarios, ~25 min on 2 cores)
    python benchmarks/transfer.py --only digits-backdoor  (one scenario)
    python benchmarks/transfer.py --quick                 (2 seeds, smoke run)
    python benchmarks/transfer.py --report-only           (the table from the stored JSON)

Scenarios: digits backdoor of 60 (seeds 0–9, target = seed % 10, cnn at the default 30
epochs); Fashion-MNIST backdoor of 600 on all 60k training images (seeds 0–4, target = seed %
10, cnn, 5 epochs of batch 128); Fashion-MNIST label flip of 10 % (seed 0). Nothing is tuned
per scenario: `masked_finetune` runs at its registry defaults (lr "auto": the trust-region step
size of core.unlearning.stepsize, checked on a validation split of D_r only). On digits,
`masked_sam` (ρ = 0.05) runs too, for the relearning question.

Per strategy, over the seeds: removal (backdoor_removal or restored_pct), test_acc_drop,
retrain_ratio (full cost: selection with its curvature or gradient pass + update, over the
retraining seconds measured in the same process and thread count), relearn_gap, and how many
seeds meet the acceptance bar (removal ≥ 0.8 — label flip: ≥ 50 % restored —, test accuracy within
1 point, full cost ≤ 10 % of retraining); how many seeds the guard stopped early or failed.
Models, curvature and cells are kept in a run store (default runs/transfer_bench, git-ignored).
Writes benchmarks/results/transfer.json and transfer.md (the table README.md shows).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.claims_report import esc  # noqa: E402
from core import sweep as sweep_api  # noqa: E402
from core.store import RunStore  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_STORE = ROOT / "runs" / "transfer_bench"
FASHION_TRAIN = {"epochs": 5, "batch_size": 128}
SCENARIOS = {
    "digits-backdoor": {
        "config": {"dataset": "digits", "scenario": {"kind": "backdoor", "size": 60}},
        "seeds": list(range(10)),
        "measure": "backdoor_removal",
        "bar": 0.8,
        "methods": [("masked_finetune", {}), ("masked_sam", {"rho": 0.05})],
    },
    "fashion-backdoor": {
        "config": {
            "dataset": "fashion-mnist",
            "scenario": {"kind": "backdoor", "size": 600},
            "train": FASHION_TRAIN,
        },
        "seeds": list(range(5)),
        "measure": "backdoor_removal",
        "bar": 0.8,
        "methods": [("masked_finetune", {})],
    },
    "fashion-label-flip": {
        "config": {
            "dataset": "fashion-mnist",
            "scenario": {"kind": "label_flip", "fraction": 0.1},
            "train": FASHION_TRAIN,
        },
        # 6,000 flipped images (D̃_f = the same images relabelled): ⌈8 · 6,000 / 64⌉ = 750 steps a strategy — one seed
        "seeds": [0],
        "measure": "restored_pct",  # in percent
        "bar": 50.0,
        "methods": [("masked_finetune", {})],
    },
}
# SAPS and the other scored strategies pay for their curvature or gradient pass; the curvature
# is the exact diagonal on a seeded subsample of 512 training images (benchmarks/curvature_samples.py)
STRATEGIES = [
    {"name": "saps", "fraction": 0.02, "largest": True},
    {"name": "saps", "fraction": 0.05, "largest": True},
    {"name": "magnitude", "fraction": 0.02},
    {"name": "magnitude", "fraction": 0.05},
    {"name": "random", "fraction": 0.05},
    {"name": "gradient", "fraction": 0.05},
    {"name": "last_layer"},
    {"name": "all"},
]
CURVATURE = {"method": "exact", "data": "full", "samples": 512}
COST_BAR = 0.10
TEST_DROP_BAR = 0.01


def sweep_config(name: str, seed: int, method: str, options: dict) -> dict:
    sc = SCENARIOS[name]
    cfg = copy.deepcopy(sc["config"])
    if sc["config"]["scenario"]["kind"] == "backdoor":
        cfg["scenario"]["target"] = seed % 10
    cfg.update(
        model="cnn",
        device="cpu",
        seeds=[seed],
        strategies=copy.deepcopy(STRATEGIES),
        methods=[method],
        unlearning={"method": method, **options},
        curvature=dict(CURVATURE),
        metrics={"mia": False, "relearn": True},
    )
    return cfg


def summarize(values: list) -> dict:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    if not v:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(v)), "min": float(np.min(v)), "max": float(np.max(v)), "n": len(v)}


def cell_record(name: str, seed: int, method: str, options: dict, cell: dict) -> dict:
    sc = SCENARIOS[name]
    m, log = cell["metrics"], cell.get("log") or {}
    removal = m.get(sc["measure"])
    drop = m.get("test_acc_drop")
    ratio = cell.get("retrain_ratio")
    return {
        "scenario": name,
        "seed": seed,
        "method": method,
        "options": options,
        "label": cell["label"],
        "removal": removal,
        "test_acc_drop": drop,
        "retrain_ratio": ratio,
        "seconds": cell.get("seconds"),
        "relearn_gap": m.get("relearn_gap"),
        "steps": cell.get("steps"),
        "lr": cell.get("lr"),
        "rewinds": log.get("rewinds"),
        "stopped_by": log.get("stopped_by"),
        "guard_failed": bool(log.get("guard_failed")),
    }


def meets_bar(rec: dict) -> bool:
    """Removal at the scenario's bar, test accuracy within 1 point, full cost ≤ 10 % of retraining."""
    removal, drop, ratio = rec["removal"], rec["test_acc_drop"], rec["retrain_ratio"]
    return bool(
        removal is not None
        and removal >= SCENARIOS[rec["scenario"]]["bar"]
        and drop is not None
        and drop <= TEST_DROP_BAR
        and ratio is not None
        and ratio <= COST_BAR
    )


def table(cells: list[dict]) -> list[dict]:
    out = []
    keys = dict.fromkeys((c["scenario"], c["method"], c["label"]) for c in cells)
    for scenario, method, label in keys:
        rows = [c for c in cells if (c["scenario"], c["method"], c["label"]) == (scenario, method, label)]
        entry = {"scenario": scenario, "method": method, "label": label, "seeds": len(rows)}
        for k in ("removal", "test_acc_drop", "retrain_ratio", "relearn_gap", "steps"):
            entry[k] = summarize([r[k] for r in rows])
        entry["meets_bar"] = sum(meets_bar(r) for r in rows)
        entry["removal_80_and_gap_015"] = sum(
            (r["removal"] or 0) >= SCENARIOS[scenario]["bar"]
            and r["relearn_gap"] is not None
            and r["relearn_gap"] <= 0.15
            for r in rows
        )
        entry["stopped_by_guard"] = sum(r["stopped_by"] == "guard" for r in rows)
        entry["guard_failed"] = sum(r["guard_failed"] for r in rows)
        out.append(entry)
    return out


def machine() -> dict:
    """Where the figures were measured (written with every result JSON)."""
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def fmt(s: dict, digits: int = 2) -> str:
    if s["median"] is None:
        return "—"
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| scenario | method | strategy | seeds | removal (label flip: % restored) median [min, max] | test drop | full cost / retraining | relearn gap | meets bar | guard stopped / failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in rows:
        lines.append(
            f"| {e['scenario']} | {e['method']} | {esc(e['label'])} | {e['seeds']} | "
            f"{fmt(e['removal'])} | "
            f"{fmt(e['test_acc_drop'], 3)} | {fmt(e['retrain_ratio'], 3)} | {fmt(e['relearn_gap'])} | "
            f"{e['meets_bar']}/{e['seeds']} | {e['stopped_by_guard']} / {e['guard_failed']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(DEFAULT_STORE))
    parser.add_argument("--out", default=str(RESULTS / "transfer.json"))
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="2 seeds a scenario")
    parser.add_argument("--report-only", action="store_true", help="the table from the stored JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    store = RunStore(args.store)
    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.exists() else {"cells": []}
    cells = [c for c in previous.get("cells", []) if c["scenario"] not in args.only]
    if args.report_only:
        cells, args.only = previous["cells"], []
        for c in cells:
            c["meets_bar"] = meets_bar(c)
    for name in args.only:
        seeds = SCENARIOS[name]["seeds"][: 2 if args.quick else None]
        for seed in seeds:
            for method, options in SCENARIOS[name]["methods"]:
                result = sweep_api.sweep(sweep_config(name, seed, method, options), store=store)
                for cell in result["cells"]:
                    rec = cell_record(name, seed, method, options, cell)
                    rec["meets_bar"] = meets_bar(rec)
                    cells.append(rec)
                    print(
                        f"{name} seed {seed} {method} {rec['label']}: removal {rec['removal']} "
                        f"drop {rec['test_acc_drop']} ratio {rec['retrain_ratio']} steps {rec['steps']}",
                        flush=True,
                    )
    rows = table(cells)
    report = markdown(rows)
    print(report)
    out = {
        "benchmark": "transfer",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "bars": {"cost": COST_BAR, "test_drop": TEST_DROP_BAR},
        "scenarios": {k: {**v, "methods": [list(m) for m in v["methods"]]} for k, v in SCENARIOS.items()},
        "strategies": STRATEGIES,
        "curvature": CURVATURE,
        "table": rows,
        "markdown": report,
        "cells": cells,
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1))
    out_path.with_suffix(".md").write_text(report + "\n")
    print(f"wrote {out_path} and {out_path.with_suffix('.md')}")
    return out


if __name__ == "__main__":
    main()
