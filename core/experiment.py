"""One run: config → data → models → scores → masks → methods → metrics.

    dataset → scenario: D = D_r ∪ D_f as trained, D̃_f the corrected samples
            → θ* trained on D_r ∪ D_f, the reference retrained on D_r ∪ D̃_f
            → diag H at θ* (when a strategy needs it) and the live mask (shared by every row)
            → one mask M per strategy → θ = θ* − τ·(M ⊙ G) by the configured method
            → METRICS + COMPARISONS per row

The inputs (data, θ*, the reference, the curvature, the live mask) come from core.artifacts,
cached in the store with the seconds they took when computed: a row's cost is its FULL cost
(curvature and liveness included at their measured time, even when they came from the cache).
θ* is never modified: every method works on a copy. Sweeps over many cells: core.sweep.

Progress: `progress(stage, fraction, message)`, `fraction` the share of the run done (0..1);
stages "data", "train", "retrain", "curvature", "liveness", "strategy", "done".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core import config as config_mod
from core import metrics, models, selection, training, unlearning
from core.artifacts import (
    Prepared,
    Shared,
    check,
    curvature_key,
    curvature_scores,
    is_budgeted,
    lacks_budget,
    liveness,
    model_key,
    needs_curvature,
    prepare,
    shared_inputs,
    strategy_needs,
    train_model,
)
from core.errors import ConfigError
from core.store import RunStore, config_key

__all__ = [  # the run's inputs live in core.artifacts; re-exported as the one entry point
    "Prepared",
    "Shared",
    "apply_strategy",
    "check",
    "curvature_key",
    "curvature_scores",
    "curve_monitor",
    "liveness",
    "model_key",
    "prepare",
    "run",
    "run_strategies",
    "shared_inputs",
    "train_model",
    "unlearning_hparams",
]
Progress = Callable[[str, float, str], None]


def _noop(stage: str, fraction: float, message: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# one strategy: mask + method, with its full cost


def unlearning_hparams(cfg: dict, method: str | None = None) -> tuple[str, dict]:
    """(method, hparams for core.unlearning.unlearn) from the config's "unlearning" section."""
    u = dict(cfg["unlearning"])
    method = method or u.pop("method")
    u.pop("method", None)
    if method == "retrain":  # the gold standard trains like the original
        t = cfg["train"]
        u = {
            "epochs": t["epochs"],
            "train_lr": t["lr"],
            "batch_size": t["batch_size"],
            "train_optimizer": t["optimizer"],
            "train_weight_decay": t["weight_decay"],
            "train_schedule": t.get("schedule", "constant"),
        }
    return method, u


def _empty_budget(strategy: dict, fraction: float | None) -> tuple[str, str]:
    """(field, message) for a budget whose mask selects no parameter (a threshold above every
    score, say), with the way out; the budget is what is named, not the mask."""
    label = selection.strategy_label(strategy, fraction)
    largest = strategy.get("largest", True)
    if fraction is None and strategy.get("threshold") is not None:
        way = "lower the threshold" if largest else "raise the threshold"
        return "threshold", f"{label}: threshold {strategy['threshold']:g} selects no parameter; {way}"
    if fraction is None and strategy.get("quantile") is not None:
        way = "lower the quantile" if largest else "raise the quantile"
        return "quantile", f"{label}: quantile {strategy['quantile']:g} selects no parameter; {way}"
    return "fraction", f"{label}: the budget selects no parameter; raise the fraction"


def apply_strategy(
    strategy: dict,
    fraction: float | None,
    method: str,
    hparams: dict,
    prepared: Prepared,
    original: nn.Module,
    shared: Shared,
    *,
    seed: int,
    retrain_seconds: float | None = None,
    monitor: Callable[[nn.Module], dict] | None = None,
) -> tuple[nn.Module, dict]:
    """Mask + masked unlearning for one strategy; returns (unlearned model, ROW without metrics).

    Cost: seconds_select = the curvature (strategies that need it, or a method that reads it)
    + the liveness pass (strategies that need it: one empirical-Fisher pass over D)
    + building the mask (its forget gradient or Fisher passes included); seconds_update = the
    method (step-size search included); seconds = their sum; seconds_amortized leaves out the
    shared curvature and liveness; retrain_ratio = seconds / retraining seconds. With `monitor`
    a multi-step method's row gets "curve" and "curve_seconds", excluded from every cost."""
    if not is_budgeted(strategy):
        fraction = None
    elif lacks_budget(strategy, fraction):
        raise ConfigError(
            "fraction", f"strategy {strategy['name']!r} needs a fraction (or sweep 'fractions')"
        )
    fs = prepared.forget_set
    start = time.perf_counter()
    mask = selection.mask_for(
        strategy,
        original,
        fraction=fraction,
        scores=shared.scores,
        forget_set=fs,
        live=shared.live,
        seed=seed,
    )
    mask_seconds = time.perf_counter() - start
    if not any(bool(m.any()) for m in mask.values()):
        raise ConfigError(*_empty_budget(strategy, fraction))
    hp = dict(hparams)
    if method == "second_order" and hp.get("solver") == "diagonal":
        hp["scores"] = shared.scores
    model, log = unlearning.unlearn(original, mask, fs, method, seed=seed, monitor=monitor, **hp)
    needs = strategy_needs(strategy)
    reads_curvature = "curvature" in needs or "scores" in hp
    parts = {
        "curvature": (shared.curvature_seconds or 0.0) if reads_curvature else 0.0,
        "liveness": shared.liveness_seconds if "liveness" in needs else 0.0,
        "mask": mask_seconds,
    }
    select_seconds, update_seconds = sum(parts.values()), log["seconds"]
    total = select_seconds + update_seconds
    row = {
        "name": strategy["name"],
        "label": selection.strategy_label(strategy, fraction),
        "fraction": fraction,
        "largest": strategy.get("largest", True),
        "strategy": strategy,
        "method": method,
        "method_label": unlearning.METHODS[method].label,
        "n_selected": int(sum(int(m.sum()) for m in mask.values())),
        "dead_selected": selection.dead_selected(mask, shared.live),
        "seconds_select": select_seconds,
        "seconds_select_parts": parts,
        "seconds_update": update_seconds,
        "seconds": total,
        "seconds_amortized": mask_seconds + update_seconds,
        "retrain_ratio": total / retrain_seconds if retrain_seconds else None,
        "lr": log.get("lr"),
        "steps": log.get("steps"),
        "grad_evals": log["grad_evals"],
        "log": {k: v for k, v in log.items() if k not in ("val_trace", "curve")},
    }
    if "curve" in log:
        row["curve"], row["curve_seconds"] = log["curve"], log["curve_seconds"]
        # {set: [points used, points in the set]}: a curve on a subsample says so
        row["curve_sizes"] = {k: list(v) for k, v in getattr(monitor, "sizes", {}).items()}
    return model, row


CURVE_SAMPLES = 2000  # per evaluation set of a curve point: sets up to this size are used whole


def curve_monitor(prepared: Prepared, samples: int | None = CURVE_SAMPLES) -> Callable[[nn.Module], dict]:
    """What the Unlearn page plots along a trajectory: test, retain and forget accuracy and the
    attack success rate, on the SAME sets as core.metrics.evaluate (x_test; D_r; D_f inputs vs
    corrected labels; the triggered test set), so the curve's step-0 point equals θ*'s metrics.
    A set larger than `samples` (None: no limit) is read on a fixed seeded sample of `samples`
    points; `monitor.sizes` = {key: (points used, points in the set)} says which, for labels.
    One forward pass of every set per curve point. Display only: it never steers the update, so
    reading the test and attack sets here does not leak them into unlearning (lr "auto" chooses
    on a split of D_r)."""
    ds, fs = prepared.dataset, prepared.forget_set
    sets = {"test_acc": (ds.x_test, ds.y_test), "retain_acc": fs.retain, "forget_acc": fs.forget_true}
    if "triggered_test" in fs.eval_sets:
        sets["asr"] = fs.eval_sets["triggered_test"]
    g = torch.Generator().manual_seed(0)
    picked, sizes = {}, {}
    for k, (x, y) in sets.items():
        if samples is None or len(y) <= samples:
            picked[k] = (x, y)
        else:
            keep = torch.randperm(len(y), generator=g)[:samples].sort().values
            picked[k] = (x[keep], y[keep])
        sizes[k] = (len(picked[k][1]), len(y))
    x_all = torch.cat([x for x, _ in picked.values()])
    bounds = torch.tensor([0] + [len(y) for _, y in picked.values()]).cumsum(0).tolist()

    def monitor(model: nn.Module) -> dict:
        pred = training.predict(model, x_all).argmax(1)  # one forward pass for every set
        out = {
            k: (float((pred[lo:hi] == y.cpu()).float().mean()) if hi > lo else None)
            for (k, (_, y)), lo, hi in zip(picked.items(), bounds[:-1], bounds[1:])
        }
        out.setdefault("asr", None)
        return out

    monitor.sizes = sizes  # type: ignore[attr-defined]
    return monitor


# ---------------------------------------------------------------------------------------------
# the run


def run(
    config: dict | None = None, *, store: RunStore | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run one experiment: validate, prepare, check, train, retrain, curvature, strategies.

    Bad input raises ConfigError/DataError before anything is trained or written to the store."""
    progress = progress or _noop
    start = time.perf_counter()
    cfg = config_mod.normalize(config or {})
    progress("data", 0.0, f"loading {cfg['dataset']}")
    prepared = prepare(cfg)
    check(cfg, prepared)
    if store is None:
        return _execute(cfg, prepared, None, progress, start)
    with store.recording(cfg, kind="run", key=config_key(cfg)) as rec:
        result = _execute(cfg, prepared, store, progress, start)
        result["run_id"] = rec["id"]
        store.finish(rec["id"], result, result["seconds"]["total"])
        rec["finished"] = True
    return result


def _stage_weights(cfg: dict) -> dict[str, float]:
    w = {"train": 1.0, "retrain": 1.0 if cfg["retrain"] else 0.0}
    w["curvature"] = 0.3 if cfg["strategies"] else 0.0
    w["liveness"] = 0.05 if cfg["strategies"] else 0.0
    w["strategy"] = 0.4 * len(cfg["strategies"])
    total = sum(w.values())
    return {k: v / total for k, v in w.items()}


def _execute(
    cfg: dict, prepared: Prepared, store: RunStore | None, progress: Progress, start: float
) -> dict[str, Any]:
    weights = _stage_weights(cfg)
    done = 0.0
    device = training.resolve_device(cfg["device"])

    def train_stage(role: str, stage: str) -> tuple[nn.Module, dict]:
        def cb(epoch: int, total: int, loss: float, acc: float) -> None:
            message = f"{role}: epoch {epoch}/{total}, loss {loss:.3f}, acc {acc:.3f}"
            progress(stage, done + weights[stage] * epoch / total, message)

        return train_model(cfg, prepared, role, store=store, device=device, progress=cb)

    ds, fs = prepared.dataset, prepared.forget_set
    original, orig_meta = train_stage("original", "train")
    done += weights["train"]
    progress("train", done, "original model ready")
    retrained, re_meta = None, {"seconds": None}
    if cfg["retrain"]:
        retrained, re_meta = train_stage("retrained", "retrain")
        done += weights["retrain"]
        progress("retrain", done, "retrained reference ready")
    opts = {"seed": cfg["seed"], **cfg["metrics"]}
    result: dict[str, Any] = {
        "config": cfg,
        "run_id": None,
        "scenario": fs.summary(),
        "n_parameters": models.count_parameters(original),
        "device": str(device),
        "original": metrics.evaluate(original, ds, fs, reference=retrained, **opts),
        "retrained": metrics.evaluate(retrained, ds, fs, **opts) if retrained is not None else None,
        "history": {"original": orig_meta.get("history"), "retrained": re_meta.get("history")},
        "seconds": {
            "train": orig_meta["seconds"],
            "retrain": re_meta["seconds"],
            "curvature": None,
            "liveness": None,
            "total": None,
        },
        "curvature_cached": False,
        "strategies": [],
    }
    if cfg["strategies"]:
        run_strategies(
            cfg,
            prepared,
            original,
            retrained,
            result,
            progress=progress,
            base=done,
            weights=weights,
            store=store,
        )
    result["seconds"]["total"] = time.perf_counter() - start
    progress("done", 1.0, "done")
    return result


def run_strategies(
    cfg: dict,
    prepared: Prepared,
    original: nn.Module,
    retrained: nn.Module | None,
    result: dict,
    *,
    progress: Progress,
    base: float,
    weights: dict[str, float],
    store: RunStore | None = None,
) -> None:
    """Curvature and liveness once, then one mask + method + METRICS per strategy (fills result)."""
    method, hparams = unlearning_hparams(cfg)
    curvature = needs_curvature(cfg["strategies"], [(method, hparams)])
    progress(
        "curvature", base, f"Hessian diagonal ({cfg['curvature']['method']})" if curvature else "liveness"
    )
    shared = shared_inputs(cfg, prepared, original, curvature=curvature, store=store)
    result["seconds"]["curvature"] = shared.curvature_seconds
    result["seconds"]["liveness"] = shared.liveness_seconds
    result["curvature_cached"] = shared.curvature_cached
    base += weights["curvature"] + weights["liveness"]
    ds, fs = prepared.dataset, prepared.forget_set
    # the reference's test predictions are the same for every strategy: compute them once
    ref_logits = training.predict(retrained, ds.x_test) if retrained is not None else None
    monitor = curve_monitor(prepared, CURVE_SAMPLES)
    n = len(cfg["strategies"])
    for i, strategy in enumerate(cfg["strategies"]):
        label = selection.strategy_label(strategy, strategy.get("fraction"))
        progress("strategy", base + weights["strategy"] * i / n, f"{label}: select + unlearn ({method})")
        model, row = apply_strategy(
            strategy,
            strategy.get("fraction"),
            method,
            hparams,
            prepared,
            original,
            shared,
            seed=cfg["seed"],
            retrain_seconds=result["seconds"]["retrain"],
            monitor=monitor,
        )
        m = metrics.evaluate(
            model,
            ds,
            fs,
            reference=retrained,
            reference_test_logits=ref_logits,
            seed=cfg["seed"],
            **cfg["metrics"],
        )
        row["metrics"] = metrics.compare(m, result["original"], result["retrained"], len(ds.y_test))
        result["strategies"].append(row)
    progress("strategy", min(1.0, base + weights["strategy"]), "strategies done")
