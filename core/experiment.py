"""One config -> one result (DESIGN.md "Result"), stored in the run store.

    dataset -> scenario -> original θ* on D_r ∪ D_f -> reference on D_r ∪ D̃_f
            -> diag H at θ* -> one mask per strategy -> masked unlearning -> METRICS

Trained models are cached as checkpoints in the store, keyed by everything that determines
their weights (data, scenario, model, training settings, seed), so a sweep or a page that
asks again reuses them.

Progress: `progress(stage, fraction, message)` with `fraction` the share of the whole run
done so far (0..1); stages: "data", "train", "retrain", "curvature", "strategy", "done".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core import config as config_mod
from core import data, metrics, models, scenarios, training
from core.store import RunStore, config_key

Progress = Callable[[str, float, str], None]


def _noop(stage: str, fraction: float, message: str) -> None:
    pass


@dataclass
class Prepared:
    """The data side of a run: the dataset and its forget scenario."""

    dataset: data.Dataset
    forget_set: scenarios.ForgetSet


def prepare(cfg: dict) -> Prepared:
    """Load the data set and build the scenario of a normalized config (ConfigError/DataError)."""
    ds = data.load(cfg["dataset"], cfg["root"], seed=0)
    if cfg["train_size"] or cfg["test_size"]:
        ds = ds.subset(cfg["train_size"], cfg["test_size"], seed=0)
    sc = dict(cfg["scenario"])
    kind = sc.pop("kind")
    fs = scenarios.build(ds, kind, seed=cfg["seed"], **sc)
    return Prepared(ds, fs)


def model_key(cfg: dict, role: str) -> str:
    """What determines a trained model's weights (role: original or retrained)."""
    keys = ("dataset", "root", "train_size", "test_size", "model", "seed", "scenario", "train")
    return f"{role}-{config_key({k: cfg[k] for k in keys})}"


def train_model(cfg: dict, prepared: Prepared, role: str, *, store: RunStore | None = None,
                progress: Callable[[int, int, float, float], None] | None = None,
                device: torch.device | None = None) -> tuple[nn.Module, dict]:  # fmt: skip
    """Train (or load from the store) the `original` model on D_r ∪ D_f or the `retrained`
    reference on D_r ∪ D̃_f. Returns (model in eval mode, {"history", "seconds", "cached"})."""
    import json

    dev = device or training.resolve_device(cfg["device"])
    model = models.build(cfg["model"], prepared.dataset, seed=cfg["seed"])
    name = model_key(cfg, role)
    meta_path = store.checkpoints / f"{name}.json" if store is not None else None
    if store is not None and store.has_checkpoint(name) and meta_path.is_file():
        model.load_state_dict(store.load_checkpoint(name))
        meta = json.loads(meta_path.read_text())
        return model.to(dev).eval(), {**meta, "cached": True}
    fs = prepared.forget_set
    x, y = (fs.x_train, fs.y_train) if role == "original" else fs.retrain_data()
    t = cfg["train"]
    hist = training.train(model, x, y, epochs=t["epochs"], lr=t["lr"], batch_size=t["batch_size"],
                          seed=cfg["seed"], device=dev, progress=progress, optimizer=t["optimizer"],
                          weight_decay=t["weight_decay"])  # fmt: skip
    meta = {"history": hist.epochs, "seconds": hist.seconds}
    if store is not None:
        store.save_checkpoint(name, model.state_dict())
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(meta_path)
    return model, {**meta, "cached": False}


def run(config: dict | None = None, *, store: RunStore | None = None,
        progress: Progress | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one experiment: validate, prepare, train, retrain, curvature, strategies.

    Bad input raises ConfigError/DataError before anything is written to the store.
    """
    progress = progress or _noop
    start = time.perf_counter()
    cfg = config_mod.normalize(config or {})
    progress("data", 0.0, f"loading {cfg['dataset']}")
    prepared = prepare(cfg)
    device = training.resolve_device(cfg["device"])
    if store is None:
        return _execute(cfg, prepared, device, None, progress, start)
    with store.recording(cfg, kind="run", key=config_key(cfg)) as rec:
        result = _execute(cfg, prepared, device, store, progress, start)
        result["run_id"] = rec["id"]
        store.finish(rec["id"], result, result["seconds"]["total"])
        rec["finished"] = True
    return result


def _stage_weights(cfg: dict) -> dict[str, float]:
    w = {"train": 1.0, "retrain": 1.0 if cfg["retrain"] else 0.0}
    w["curvature"] = 0.3 if cfg["strategies"] else 0.0
    w["strategy"] = 0.4 * len(cfg["strategies"])
    total = sum(w.values()) or 1.0
    return {k: v / total for k, v in w.items()}


def _execute(cfg: dict, prepared: Prepared, device: torch.device, store: RunStore | None,
             progress: Progress, start: float) -> dict[str, Any]:  # fmt: skip
    weights = _stage_weights(cfg)
    base = 0.0

    def stage_cb(stage: str, label: str):
        offset = base

        def cb(epoch: int, total: int, loss: float, acc: float) -> None:
            progress(stage, offset + weights[stage] * epoch / total,
                     f"{label}: epoch {epoch}/{total}, loss {loss:.3f}, acc {acc:.3f}")  # fmt: skip

        return cb

    ds, fs = prepared.dataset, prepared.forget_set
    original, orig_meta = train_model(cfg, prepared, "original", store=store, device=device,
                                      progress=stage_cb("train", "original"))  # fmt: skip
    base += weights["train"]
    progress("train", base, "original model ready")
    retrained, re_meta = None, {"seconds": None}
    if cfg["retrain"]:
        retrained, re_meta = train_model(cfg, prepared, "retrained", store=store, device=device,
                                         progress=stage_cb("retrain", "retrained"))  # fmt: skip
        base += weights["retrain"]
        progress("retrain", base, "retrained reference ready")

    metric_opts = cfg["metrics"]
    result: dict[str, Any] = {
        "config": cfg,
        "scenario": fs.summary(),
        "original": metrics.evaluate(original, ds, fs, reference=retrained, **metric_opts),
        "retrained": (
            metrics.evaluate(retrained, ds, fs, **metric_opts) if retrained is not None else None
        ),  # fmt: skip
        "strategies": [],
        "history": {"original": orig_meta.get("history"), "retrained": re_meta.get("history")},
        "n_parameters": models.count_parameters(original),
        "seconds": {
            "train": orig_meta["seconds"],
            "retrain": re_meta["seconds"],
            "curvature": None,
            "total": None,
        },  # fmt: skip
        "device": str(device),
    }
    if cfg["strategies"]:
        run_strategies(cfg, prepared, original, retrained, result, progress=progress, base=base,
                       weights=weights, store=store)  # fmt: skip
    result["seconds"]["total"] = time.perf_counter() - start
    progress("done", 1.0, "done")
    return result


def run_strategies(cfg: dict, prepared: Prepared, original: nn.Module, retrained: nn.Module | None,
                   result: dict, *, progress: Progress, base: float, weights: dict[str, float],
                   store: RunStore | None = None) -> None:  # fmt: skip
    """Curvature once, then one mask + masked unlearning + METRICS per strategy (fills result)."""
    raise NotImplementedError("strategies need core.curvature, core.selection, core.unlearning")
