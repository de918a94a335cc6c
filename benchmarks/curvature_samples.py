"""Curvature on a budget: exact diag H on a seeded subsample of the training data against the
full training data, at θ* of the SAPS claims configs.

    python benchmarks/curvature_samples.py                 (digits and Fashion-MNIST 10k, ~2 min)
    python benchmarks/curvature_samples.py --only digits   (seconds)

For each data set: θ* and the retrained reference (trained as in benchmarks/saps_claims.py:
digits cnn at the default training, backdoor of 60, target 0; Fashion-MNIST cnn on a seeded
10,000-image subset, 8 epochs, backdoor of 200), reused from runs/saps_claims when that store
has them (copied, never written there), else trained into the run store (default
runs/curvature_samples). Then the exact diagonal on all of the training data, and on seeded
subsamples of 64 … 1024 samples (`curvature.samples`; seeds 0..S−1). Reported per size, as
mean and range over the seeds:

    spearman        Spearman rank correlation of the subsample's scores with the full ones,
                    over all parameters (dead ones, zero in both, included) and over the
                    parameters live in the full estimate (`spearman_live`)
    jaccard@f       |A ∩ B| / |A ∪ B| of the top-f masks (SAPS, largest) for f = 1 %, 2 %, 5 %
    seconds         wall seconds of the estimate, and as a share of the retraining seconds
                    (the retrained reference's measured training time)

Writes benchmarks/results/curvature_samples.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from core import artifacts  # noqa: E402
from core import config as config_mod  # noqa: E402
from core.curvature import hessian_diagonal  # noqa: E402
from core.selection import jaccard, select  # noqa: E402
from core.store import RunStore  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_STORE = ROOT / "runs" / "curvature_samples"
SOURCE_STORE = ROOT / "runs" / "saps_claims"
SIZES = (64, 128, 256, 512, 1024)
FRACTIONS = (0.01, 0.02, 0.05)
DATASETS = {
    "digits": {
        "config": {"dataset": "digits", "scenario": {"kind": "backdoor", "size": 60, "target": 0}},
        "seeds": 5,
    },
    "fashion-mnist": {
        "config": {
            "dataset": "fashion-mnist",
            "train_size": 10000,
            "test_size": 2000,
            "scenario": {"kind": "backdoor", "size": 200, "target": 0},
            "train": {"epochs": 8, "batch_size": 128},
        },
        "seeds": 3,
    },
}


def reuse(store: RunStore, name: str) -> None:
    """Copy artifact `name` from the SAPS claims store when ours lacks it (read-only there)."""
    src = SOURCE_STORE / "checkpoints"
    files = [f"{name}.safetensors", f"{name}.json"]
    if store.load_artifact(name) is None and all((src / f).is_file() for f in files):
        for f in files:
            shutil.copyfile(src / f, store.checkpoints / f)


def flat(scores: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([v.flatten().double() for v in scores.values()]).numpy()


def timed(model, x, y, **kwargs) -> tuple[dict, float]:
    start = time.perf_counter()
    scores = hessian_diagonal(model, x, y, "exact", batch_size=256, **kwargs)
    return scores, time.perf_counter() - start


def compare(full: dict, sub: dict, live: np.ndarray) -> dict:
    a, b = flat(full), flat(sub)
    out = {
        "spearman": float(spearmanr(a, b).statistic),
        "spearman_live": float(spearmanr(a[live], b[live]).statistic),
    }
    for f in FRACTIONS:
        out[f"jaccard@{f:g}"] = jaccard(select(full, f), select(sub, f))
    return out


def summarize(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def run_dataset(name: str, store: RunStore, seeds: int) -> dict:
    spec = DATASETS[name]
    cfg = config_mod.normalize({**spec["config"], "model": "cnn", "device": "cpu", "seed": 0})
    prepared = artifacts.prepare(cfg)
    for role in ("original", "retrained"):
        reuse(store, artifacts.model_key(cfg, role))
    model, _ = artifacts.train_model(cfg, prepared, "original", store=store)
    _, ref = artifacts.train_model(cfg, prepared, "retrained", store=store)
    retrain = float(ref["seconds"])
    fs = prepared.forget_set
    x, y = fs.x_train, fs.y_train
    full, full_seconds = timed(model, x, y)
    live = flat(full) != 0
    rows = []
    for size in SIZES:
        if size >= len(y):
            continue
        per_seed = []
        for seed in range(seeds):
            sub, seconds = timed(model, x, y, subsample=size, seed=seed)
            per_seed.append({"seed": seed, "seconds": seconds, **compare(full, sub, live)})
        keys = [k for k in per_seed[0] if k != "seed"]
        rows.append(
            {
                "samples": size,
                **{k: summarize([r[k] for r in per_seed]) for k in keys},
                "retrain_share": float(np.mean([r["seconds"] for r in per_seed])) / retrain,
                "per_seed": per_seed,
            }
        )
    return {
        "config": cfg,
        "n_train": len(y),
        "n_parameters": int(live.size),
        "live_fraction": float(live.mean()),
        "retrain_seconds": retrain,
        "full_seconds": full_seconds,
        "full_retrain_share": full_seconds / retrain,
        "sizes": rows,
    }


def print_table(name: str, res: dict) -> None:
    print(
        f"\n{name}: N = {res['n_train']}, {res['n_parameters']} parameters "
        f"({100 * res['live_fraction']:.0f} % live), retraining {res['retrain_seconds']:.1f} s, "
        f"full exact diag {res['full_seconds']:.2f} s ({100 * res['full_retrain_share']:.1f} % of retraining)"
    )
    head = ["samples", "spearman", "spearman_live"] + [f"jaccard@{f:g}" for f in FRACTIONS]
    print(" | ".join(head + ["seconds", "% retrain"]))
    for r in res["sizes"]:
        cells = [str(r["samples"])]
        cells += [f"{r[k]['mean']:.3f} [{r[k]['min']:.3f}, {r[k]['max']:.3f}]" for k in head[1:]]
        cells += [f"{r['seconds']['mean']:.2f}", f"{100 * r['retrain_share']:.1f}"]
        print(" | ".join(cells))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(DATASETS), action="append")
    parser.add_argument("--seeds", type=int, help="subsample seeds per size (default per data set)")
    parser.add_argument("--store", default=str(DEFAULT_STORE))
    parser.add_argument("--out", default=str(RESULTS / "curvature_samples.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    store = RunStore(args.store)
    out = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "estimator": "exact",
        "fractions": list(FRACTIONS),
        "datasets": {},
    }
    for name in args.only or list(DATASETS):
        res = run_dataset(name, store, args.seeds or DATASETS[name]["seeds"])
        out["datasets"][name] = res
        print_table(name, res)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {args.out}")
    return out


if __name__ == "__main__":
    main()
