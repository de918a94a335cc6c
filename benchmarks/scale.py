"""The paper's scale: resnet18 on all of Fashion-MNIST (or CIFAR-10 from a local folder), a
backdoor of 1 % of the training images, the exact Hessian diagonal over the whole training set.

    python benchmarks/scale.py                                   (Fashion-MNIST, 60k, GPU if any)
    python benchmarks/scale.py --dataset cifar10 --root ~/data/cifar-10-batches-py
    python benchmarks/scale.py --smoke                           (512 images, 1 epoch: the code path on CPU)

One core.experiment run: train θ*, retrain on D_r ∪ D̃_f (the reference), the exact curvature on
the full training set (`curvature.samples` with --samples), then SAPS @ 2 % / 5 % against
magnitude, random (live), SalUn, the last layer and all parameters, with masked_finetune at its
registry defaults. Reports the device's name, the seconds of each stage, the curvature's
images per second (goal on an H100/H200: 50,000 images in ≤ 60 s), and per strategy removal,
test-accuracy drop, full cost / retraining and the relearn gap. Writes
benchmarks/results/scale_<dataset>_<device>.json (--out to change).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.claims_report import esc  # noqa: E402
from core import experiment  # noqa: E402
from core.store import RunStore  # noqa: E402
from core.training import resolve_device  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STRATEGIES = [
    {"name": "saps", "fraction": 0.02, "largest": True},
    {"name": "saps", "fraction": 0.05, "largest": True},
    {"name": "magnitude", "fraction": 0.05},
    {"name": "random", "fraction": 0.05},
    {"name": "gradient", "fraction": 0.05},
    {"name": "last_layer"},
    {"name": "all"},
]
EPOCHS = 10
SMOKE = {"train_size": 512, "test_size": 256, "epochs": 1, "samples": 128}


def config(args: argparse.Namespace) -> dict:
    """The experiment config (backdoor of 1 % of the training images, target = seed % 10)."""
    n_train = args.train_size
    cfg = {
        "dataset": args.dataset,
        "root": args.root,
        "train_size": n_train,
        "test_size": args.test_size,
        "model": "resnet18",
        "seed": args.seed,
        "device": args.device,
        "scenario": {
            "kind": "backdoor",
            "size": max(10, round(0.01 * n_train)) if n_train else 600 if args.dataset != "cifar10" else 500,
            "target": args.seed % 10,
        },
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 1e-3},
        "curvature": {"method": "exact", "data": "full", "batch_size": args.curvature_batch},
        "strategies": STRATEGIES,
        "unlearning": {"method": "masked_finetune"},
        "metrics": {"mia": False, "relearn": not args.no_relearn},
    }
    if args.samples:
        cfg["curvature"]["samples"] = args.samples
    return cfg


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def summary(result: dict, seconds: float, device: torch.device) -> dict:
    n_curv = result["config"]["curvature"].get("samples") or result.get("n_train")
    s = result["seconds"]
    rows = []
    for row in result["strategies"]:
        m = row["metrics"]
        rows.append(
            {
                "label": row["label"],
                "removal": m.get("backdoor_removal"),
                "test_acc_drop": m.get("test_acc_drop"),
                "retrain_ratio": row["retrain_ratio"],
                "seconds": row["seconds"],
                "relearn_gap": m.get("relearn_gap"),
                "steps": row.get("steps"),
                "stopped_by": (row.get("log") or {}).get("stopped_by"),
                "guard_failed": bool((row.get("log") or {}).get("guard_failed")),
            }
        )
    return {
        "device": device_name(device),
        "seconds": {**s, "wall": seconds},
        "curvature_images": n_curv,
        "curvature_images_per_second": (n_curv / s["curvature"]) if n_curv and s.get("curvature") else None,
        "original": {k: result["original"].get(k) for k in ("test_acc", "asr")},
        "retrained": {k: result["retrained"].get(k) for k in ("test_acc", "asr")},
        "strategies": rows,
    }


def markdown(out: dict) -> str:
    s = out["summary"]
    lines = [
        f"{out['config']['model']} on {out['config']['dataset']} ({out['n_train']} training images), "
        f"{s['device']}: train {s['seconds']['train']:.0f} s, retrain {s['seconds']['retrain']:.0f} s, "
        f"exact curvature {s['seconds'].get('curvature', 0):.1f} s over {s['curvature_images']} images "
        f"({num(s['curvature_images_per_second'], 0)} images/s). θ*: test {num(s['original']['test_acc'], 3)}, "
        f"ASR {num(s['original']['asr'], 3)}; retrained: test {num(s['retrained']['test_acc'], 3)}, "
        f"ASR {num(s['retrained']['asr'], 3)}.",
        "",
        "| strategy | removal | test drop | full cost / retraining | relearn gap | steps |",
        "|---|---|---|---|---|---|",
    ]
    for r in s["strategies"]:
        lines.append(
            f"| {esc(r['label'])} | {num(r['removal'], 2)} | {num(r['test_acc_drop'], 3)} | "
            f"{num(r['retrain_ratio'], 3)} | {num(r['relearn_gap'], 2)} | {r['steps']} |"
        )
    return "\n".join(lines)


def num(value: float | None, digits: int) -> str:
    """A figure, or "—" where it is undefined (e.g. removal when θ* did not learn the backdoor)."""
    return "—" if value is None else f"{value:.{digits}f}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "cifar10", "mnist"])
    parser.add_argument(
        "--root", default=None, help="the data folder (cifar10, mnist; fashion-mnist optional)"
    )
    parser.add_argument("--train-size", type=int, default=None, help="a seeded subset (default: all)")
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--curvature-batch",
        type=lambda v: v if v == "auto" else int(v),
        default=256,
        help="samples per curvature chunk, or auto (sized from a memory budget, for when 256 do not fit)",
    )
    parser.add_argument("--samples", type=int, default=None, help="curvature on a seeded subsample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--store", default=str(ROOT / "runs" / "scale"))
    parser.add_argument("--smoke", action="store_true", help="512 images, 1 epoch, 128 curvature samples")
    parser.add_argument(
        "--no-relearn",
        action="store_true",
        help="skip the relearning attack (20 Adam steps per model: most of a CPU smoke run's time)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.smoke:  # smaller defaults; what the command line gives explicitly stays
        args.train_size = args.train_size or SMOKE["train_size"]
        args.test_size = args.test_size or SMOKE["test_size"]
        args.epochs = SMOKE["epochs"] if args.epochs == EPOCHS else args.epochs
        args.samples = args.samples or SMOKE["samples"]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = resolve_device(args.device)
    cfg = config(args)
    start = time.perf_counter()
    result = experiment.run(cfg, store=RunStore(args.store))
    wall = time.perf_counter() - start
    out = {
        "benchmark": "scale",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "smoke": args.smoke,
        "config": result["config"],
        "n_train": result["scenario"].get("n_train") if isinstance(result.get("scenario"), dict) else None,
    }
    result["n_train"] = out["n_train"]
    out["summary"] = summary(result, wall, device)
    out["markdown"] = markdown(out)
    print(out["markdown"])
    path = Path(args.out) if args.out else RESULTS / f"scale_{args.dataset}_{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
