"""Does sharpness-aware masked unlearning, or aligning the triggered images' features with the
clean ones, resist relearning? masked_sam and masked_finetune's `align` against masked_finetune.

    python benchmarks/sam_relearn.py            (digits backdoor, 5 seeds, ~3 CPU-minutes)

Digits backdoor of 60 (target = seed % 10, as benchmarks/saps_claims.py), cnn at the default
training, seeds 0–4; SAPS (largest diag H, full data) @ 2 % and magnitude @ 5 %; masked_finetune,
masked_sam with rho ∈ {0.01, 0.05, 0.1}, and masked_finetune with align ∈ {1, 10} (the
penultimate features of each triggered D_f image pulled to θ*'s features of its clean D̃_f twin:
representation-level unlearning in the spirit of RMU, Li et al. 2024), every other option at its
registry default; and masked_finetune run further (forget_epochs 32 instead of 8, with the
guard's val_tolerance 0.01 or 0.03, and forget_epochs 128). One core.sweep per (seed, method setting) in a run store
(default runs/sam_relearn; models and curvature copied from runs/saps_claims when that store has them, never written there).

Per configuration, over the seeds: backdoor_removal (1 = as good as retraining), relearn_gap
(attack success after 20 relearning steps − the retrained model's; 0 = as hard to relearn as
retraining), relearn_success, test_acc_drop, retrain_ratio (full cost / retraining seconds),
steps, and how many seeds the guard failed. Writes benchmarks/results/sam_relearn.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.curvature_samples import reuse  # noqa: E402
from core import artifacts  # noqa: E402
from core import config as config_mod  # noqa: E402
from core import sweep as sweep_api  # noqa: E402
from core.store import RunStore, config_key  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_STORE = ROOT / "runs" / "sam_relearn"
SEEDS = (0, 1, 2, 3, 4)
RHOS = (0.01, 0.05, 0.1)
ALIGNS = (1.0, 10.0)
# more unlearning than the default: is the gap a matter of how far the guarded run goes?
STRONGER = ({"forget_epochs": 32}, {"forget_epochs": 32, "val_tolerance": 0.03}, {"forget_epochs": 128})
STRATEGIES = [
    {"name": "saps", "fraction": 0.02, "largest": True},
    {"name": "magnitude", "fraction": 0.05},
]
MEASURES = ("backdoor_removal", "relearn_gap", "relearn_success", "test_acc_drop", "asr")


def settings(rhos: tuple[float, ...], aligns: tuple[float, ...] = ALIGNS) -> list[tuple[str, dict]]:
    return (
        [("masked_finetune", {})]
        + [("masked_sam", {"rho": r}) for r in rhos]
        + [("masked_finetune", {"align": a}) for a in aligns]
        + [("masked_finetune", dict(options)) for options in STRONGER]
    )


def option_text(options: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in options.items()) or "defaults"


def sweep_config(seed: int, method: str, options: dict) -> dict:
    return {
        "dataset": "digits",
        "model": "cnn",
        "device": "cpu",
        "scenario": {"kind": "backdoor", "size": 60, "target": seed % 10},
        "seeds": [seed],
        "strategies": STRATEGIES,
        "methods": [method],
        "unlearning": {"method": method, **options},
        "curvature": {"method": "exact", "data": "full"},
        "metrics": {"mia": False, "relearn": True},
    }


def reuse_models(cfg: dict, store: RunStore) -> None:
    run = config_mod.normalize(
        {k: v for k, v in cfg.items() if k not in ("seeds", "methods")} | {"seed": cfg["seeds"][0]}
    )
    for name in (artifacts.model_key(run, "original"), artifacts.model_key(run, "retrained")):
        reuse(store, name)
    reuse(store, artifacts.curvature_key(run))
    reuse(store, f"live-{config_key({'model': artifacts.model_key(run, 'original')})}")


def summarize(values: list[float | None]) -> dict:
    v = [x for x in values if x is not None and np.isfinite(x)]
    if not v:
        return {"median": None, "mean": None, "min": None, "max": None, "n": 0}
    return {
        "median": float(np.median(v)),
        "mean": float(np.mean(v)),
        "min": float(np.min(v)),
        "max": float(np.max(v)),
        "n": len(v),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(DEFAULT_STORE))
    parser.add_argument("--out", default=str(RESULTS / "sam_relearn.json"))
    parser.add_argument("--rhos", type=float, nargs="+", default=list(RHOS))
    parser.add_argument("--aligns", type=float, nargs="+", default=list(ALIGNS))
    args = parser.parse_args(argv)
    grid = settings(tuple(args.rhos), tuple(args.aligns))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    store = RunStore(args.store)
    cells: list[dict] = []
    for seed in SEEDS:
        for method, options in grid:
            cfg = sweep_config(seed, method, options)
            reuse_models(cfg, store)
            for cell in sweep_api.sweep(cfg, store=store)["cells"]:
                m, log = cell["metrics"], cell.get("log") or {}
                rec = {"seed": seed, "method": method, "options": options, "label": cell["label"]}
                rec["rho"] = options.get("rho")  # kept for readers of the former JSON
                rec.update({k: m.get(k) for k in MEASURES})
                rec.update({k: cell.get(k) for k in ("retrain_ratio", "steps", "seconds")})
                rec["guard_failed"] = bool(log.get("guard_failed"))
                cells.append(rec)
    table = []
    for label in dict.fromkeys(c["label"] for c in cells):
        for method, options in grid:
            rows = [c for c in cells if (c["label"], c["method"], c["options"]) == (label, method, options)]
            entry = {"label": label, "method": method, "options": options, "seeds": len(rows)}
            entry["rho"] = options.get("rho")
            for k in MEASURES + ("retrain_ratio", "steps"):
                entry[k] = summarize([r[k] for r in rows])
            entry["guard_failed"] = sum(r["guard_failed"] for r in rows)
            entry["removes_80_and_within_0.15"] = sum(
                (r["backdoor_removal"] or 0) >= 0.8
                and r["relearn_gap"] is not None
                and r["relearn_gap"] <= 0.15
                for r in rows
            )
            table.append(entry)
    print(
        "strategy | method | options | removal median [min, max] | relearn_gap median [min, max] | test drop | ratio | steps | guard failed | ≥0.8 & gap ≤0.15"
    )
    for e in table:
        b, g = e["backdoor_removal"], e["relearn_gap"]
        print(
            f"{e['label']} | {e['method']} | {option_text(e['options'])} | {b['median']:.2f} [{b['min']:.2f}, {b['max']:.2f}] | "
            f"{g['median']:.2f} [{g['min']:.2f}, {g['max']:.2f}] | {e['test_acc_drop']['median']:.3f} | "
            f"{e['retrain_ratio']['median']:.2f} | {e['steps']['median']:.0f} | {e['guard_failed']} | "
            f"{e['removes_80_and_within_0.15']}/{e['seeds']}"
        )
    out = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "seeds": list(SEEDS),
        "rhos": list(args.rhos),
        "aligns": list(args.aligns),
        "table": table,
        "cells": cells,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
