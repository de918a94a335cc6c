"""Seconds per training epoch for mlp, mlp_wide and cnn on digits and Fashion-MNIST (CPU).

    python benchmarks/train.py [--epochs 3] [--threads N] [--out benchmarks/results/train.json]

Prints a table and saves JSON. Each figure is the median over the measured epochs (the
first epoch is included: there is no separate warm-up in a real run either).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from core import data, models, training  # noqa: E402
from core.errors import DataError  # noqa: E402


def measure(dataset_name: str, model_name: str, epochs: int, batch_size: int = 64) -> dict:
    ds = data.load(dataset_name)
    model = models.build(model_name, ds, seed=0)
    hist = training.train(
        model, ds.x_train, ds.y_train, epochs=epochs, lr=1e-3, batch_size=batch_size, seed=0, device="cpu"
    )
    per_epoch, prev = [], 0.0
    for e in hist.epochs:
        per_epoch.append(e["seconds"] - prev)
        prev = e["seconds"]
    return {
        "dataset": dataset_name,
        "model": model_name,
        "n_train": len(ds.y_train),
        "parameters": models.count_parameters(model),
        "batch_size": batch_size,
        "epochs": epochs,
        "seconds_per_epoch": statistics.median(per_epoch),
        "test_acc": training.accuracy(model, ds.x_test, ds.y_test),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for ds_name, model_name in [
        (d, m) for d in ("digits", "fashion-mnist") for m in ("mlp", "mlp_wide", "cnn")
    ]:
        try:
            rows.append(measure(ds_name, model_name, args.epochs))
        except DataError as e:
            rows.append({"dataset": ds_name, "model": model_name, "skipped": str(e)})
        r = rows[-1]
        if "skipped" in r:
            print(f"{ds_name:<14}{model_name:<9} skipped: {r['skipped'][:80]}")
        else:
            print(
                f"{ds_name:<14}{model_name:<9}{r['n_train']:>7} samples  "
                f"{r['seconds_per_epoch']:8.3f} s/epoch  test acc {r['test_acc']:.3f} "
                f"after {args.epochs} epochs"
            )
    out = {
        "benchmark": "train",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": args.threads,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
