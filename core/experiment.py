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

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core import config as config_mod
from core import data, metrics, models, scenarios, training
from core.errors import ConfigError
from core.executors import check_executor
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
    check_budgets(cfg, prepared)
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


def curvature_key(cfg: dict) -> str:
    """Checkpoint name of the Hessian diagonal of a trained original model + curvature config."""
    return f"curv-{config_key({'model': model_key(cfg, 'original'), 'curvature': cfg['curvature']})}"


def curvature_scores(cfg: dict, prepared: Prepared, original: nn.Module, *,
                     store: RunStore | None = None) -> tuple[dict[str, torch.Tensor], float, bool]:  # fmt: skip
    """diag H at θ* (config "curvature"), loaded from the store when cached.

    Returns (scores, seconds it took to compute them, cached)."""
    from core.curvature import hessian_diagonal

    name = curvature_key(cfg)
    meta_path = store.checkpoints / f"{name}.json" if store is not None else None
    if store is not None and store.has_checkpoint(name) and meta_path.is_file():
        return store.load_checkpoint(name), json.loads(meta_path.read_text())["seconds"], True
    cv, fs = cfg["curvature"], prepared.forget_set
    x, y = {"full": (fs.x_train, fs.y_train), "retain": fs.retain, "forget": fs.forget,
            "corrected": fs.corrected}[cv["data"]]  # fmt: skip
    if len(y) == 0:
        raise ConfigError("curvature.data", f"{cv['data']!r} is empty for this scenario; use 'full'")
    options = {"probes": cv["probes"]} if cv["method"] == "hutchinson" else {}
    start = time.perf_counter()
    scores = hessian_diagonal(original, x, y, cv["method"], batch_size=cv["batch_size"], seed=cfg["seed"],
                              **options)  # fmt: skip
    seconds = time.perf_counter() - start
    if store is not None:
        store.save_checkpoint(name, scores)
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"seconds": seconds}))
        tmp.replace(meta_path)
    return scores, seconds, False


def unlearning_hparams(cfg: dict, method: str | None = None) -> tuple[str, dict]:
    """(method, hparams for core.unlearning.unlearn) from the config's "unlearning" section."""
    u = dict(cfg["unlearning"])
    method = method or u.pop("method")
    u.pop("method", None)
    if method == "retrain":  # the gold standard trains like the original
        t = cfg["train"]
        u = {"epochs": t["epochs"], "train_lr": t["lr"], "batch_size": t["batch_size"],
             "train_optimizer": t["optimizer"]}  # fmt: skip
    return method, u


def apply_strategy(strategy: dict, fraction: float | None, method: str, hparams: dict, prepared: Prepared,
                   original: nn.Module, scores: dict, *, seed: int,
                   monitor: Callable[[nn.Module], dict] | None = None) -> tuple[nn.Module, dict]:  # fmt: skip
    """Selection + masked unlearning for one strategy; returns (unlearned model, row without metrics).

    The row's "seconds" covers the selection and the update (step-size search included). With
    `monitor` (see core.unlearning.unlearn) a multi-step method's row gets "curve" and
    "curve_seconds"; the curve's evaluation is not part of "seconds"."""
    from core import selection, unlearning

    fs = prepared.forget_set
    x_f, y_f = fs.forget
    start = time.perf_counter()
    options = {k: strategy[k] for k in ("per_layer", "include_zero", "signed", "threshold", "quantile")
               if strategy.get(k) is not None}  # fmt: skip
    if strategy["name"] in ("all", "last_layer"):
        fraction = None
    elif fraction is None and "threshold" not in options and "quantile" not in options:
        raise ConfigError(
            "fraction", f"strategy {strategy['name']!r} needs a fraction (or sweep 'fractions')"
        )
    mask = selection.build_mask(strategy["name"], original, fraction=fraction, largest=strategy.get("largest", True),
                                scores=scores, forget_inputs=x_f, forget_targets=y_f, inputs=fs.x_train,
                                targets=fs.y_train, seed=seed, **options)  # fmt: skip
    selection_seconds = time.perf_counter() - start
    n_selected = int(sum(int(m.sum()) for m in mask.values()))
    dead = int(sum(int(((scores[n] == 0) & m.cpu()).sum()) for n, m in mask.items())) if scores else None
    hp = dict(hparams)
    if method == "second_order" and hp.get("solver") == "diagonal":
        hp["scores"] = scores
    model, log = unlearning.unlearn(original, mask, fs, method, seed=seed, monitor=monitor, **hp)
    seconds = time.perf_counter() - start - log.get("curve_seconds", 0.0)
    row = {"name": strategy["name"], "fraction": fraction, "largest": strategy.get("largest", True),
           "method": method, "n_selected": n_selected, "dead_selected": dead, "seconds": seconds,
           "selection_seconds": selection_seconds, "unlearn_seconds": log["seconds"],
           "lr": log.get("lr"), "steps": log.get("steps"), "grad_evals": log["grad_evals"],
           "log": {k: v for k, v in log.items() if k not in ("val_trace", "curve")}}  # fmt: skip
    if "curve" in log:
        row["curve"], row["curve_seconds"] = log["curve"], log["curve_seconds"]
    return model, row


CURVE_SAMPLES = 100  # per evaluation set of a curve point (a seeded sample; None: all of it)


def curve_monitor(prepared: Prepared, samples: int | None = CURVE_SAMPLES) -> Callable[[nn.Module], dict]:
    """What the Unlearn page plots along a trajectory: test, retain and forget accuracy and the
    attack success rate, each on a fixed seeded sample of `samples` points of its set (a curve
    point then costs one forward pass of ≤ 4·samples inputs; the final metrics use every point).
    Display only: it never steers the update, so reading the test and attack sets here does not
    leak them into unlearning (lr "auto" chooses on a split of D_r)."""
    ds, fs = prepared.dataset, prepared.forget_set
    sets = {"test_acc": (ds.x_test, ds.y_test), "retain_acc": fs.retain, "forget_acc": fs.forget_true}
    if "triggered_test" in fs.eval_sets:
        sets["asr"] = fs.eval_sets["triggered_test"]
    g = torch.Generator().manual_seed(0)
    picked = {}
    for k, (x, y) in sets.items():
        keep = torch.randperm(len(y), generator=g)[:samples] if samples is not None else torch.arange(len(y))
        picked[k] = (x[keep], y[keep])
    x_all = torch.cat([x for x, _ in picked.values()])
    bounds = torch.tensor([0] + [len(y) for _, y in picked.values()]).cumsum(0).tolist()

    def monitor(model: nn.Module) -> dict:
        pred = training.predict(model, x_all).argmax(1)  # one forward pass for every set
        out = {k: (float((pred[lo:hi] == y.cpu()).float().mean()) if hi > lo else None)
               for (k, (_, y)), lo, hi in zip(picked.items(), bounds[:-1], bounds[1:])}  # fmt: skip
        out.setdefault("asr", None)
        return out

    return monitor


def compare(m: dict, original: dict, retrained: dict | None) -> dict:
    """Add the comparisons that need the original and retrained models to a METRICS dict."""
    out = dict(m)
    ret = retrained or {}
    out["backdoor_removal"] = metrics.backdoor_removal(original.get("asr"), m.get("asr"), ret.get("asr"))
    # % restored is Warnecke's label-flip measure; a backdoor barely moves test accuracy
    backdoor = original.get("asr") is not None
    acc = (original.get("test_acc"), m.get("test_acc"), ret.get("test_acc"))
    out["restored_pct"] = None if backdoor else metrics.restored_pct(*acc)
    out["test_acc_drop"] = original["test_acc"] - m["test_acc"]
    return out


def run_strategies(cfg: dict, prepared: Prepared, original: nn.Module, retrained: nn.Module | None,
                   result: dict, *, progress: Progress, base: float, weights: dict[str, float],
                   store: RunStore | None = None) -> None:  # fmt: skip
    """Curvature once, then one mask + masked unlearning + METRICS per strategy (fills result)."""
    progress("curvature", base, f"Hessian diagonal ({cfg['curvature']['method']})")
    scores, curv_seconds, cached = curvature_scores(cfg, prepared, original, store=store)
    result["seconds"]["curvature"] = curv_seconds
    result["curvature_cached"] = cached
    base += weights["curvature"]
    method, hparams = unlearning_hparams(cfg)
    retrain_seconds = result["seconds"].get("retrain")
    n = len(cfg["strategies"])
    ds, fs = prepared.dataset, prepared.forget_set
    # the reference's test predictions are the same for every strategy: compute them once
    ref_logits = training.predict(retrained, ds.x_test) if retrained is not None else None
    monitor = curve_monitor(prepared, CURVE_SAMPLES)
    for i, strategy in enumerate(cfg["strategies"]):
        label = strategy["name"] + ("" if strategy.get("largest", True) else " (smallest)")
        progress("strategy", base + weights["strategy"] * i / n, f"{label}: select + unlearn ({method})")
        model, row = apply_strategy(strategy, strategy.get("fraction"), method, hparams, prepared, original,
                                    scores, seed=cfg["seed"], monitor=monitor)  # fmt: skip
        m = metrics.evaluate(model, ds, fs, reference=retrained, seed=cfg["seed"],
                             reference_test_logits=ref_logits, **cfg["metrics"])  # fmt: skip
        row["metrics"] = compare(m, result["original"], result["retrained"])
        row["retrain_ratio"] = row["seconds"] / retrain_seconds if retrain_seconds else None
        result["strategies"].append(row)
    progress("strategy", min(1.0, base + weights["strategy"]), "strategies done")


def check_budgets(cfg: dict, prepared: Prepared) -> None:
    """Refuse, before anything is stored, a strategy whose budget selects no parameter."""
    n_params = models.count_parameters(models.build(cfg["model"], prepared.dataset))
    fractions = [s.get("fraction") for s in cfg["strategies"] if s["name"] not in ("all", "last_layer")]
    fractions += cfg.get("fractions") or []
    for f in fractions:
        if f is not None and round(f * n_params) < 1:
            raise ConfigError("fraction", f"{f} of {n_params} parameters selects none; use at least "
                              f"{1 / n_params:.2g}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# sweeps: strategies × fractions × methods × seeds, one stored row per cell (resumable)

CELL_BASE_KEYS = ("dataset", "root", "train_size", "test_size", "model", "scenario", "train", "curvature",
                  "retrain", "metrics")  # fmt: skip


def sweep_cells(cfg: dict) -> list[dict]:
    """The grid of a normalized sweep config as cell specs (JSON-able, each a full recipe)."""
    base = {k: cfg[k] for k in CELL_BASE_KEYS}
    cells = []
    for seed in cfg["seeds"]:
        for strategy in cfg["strategies"]:
            if strategy["name"] in ("all", "last_layer"):
                fractions = [None]
            elif strategy.get("fraction") is not None:
                fractions = [strategy["fraction"]]
            elif strategy.get("threshold") is not None or strategy.get("quantile") is not None:
                fractions = [None]
            elif cfg.get("fractions"):
                fractions = cfg["fractions"]
            else:
                raise ConfigError("fractions", f"strategy {strategy['name']!r} has no fraction; give it one "
                                  "or add a 'fractions' list")  # fmt: skip
            for fraction in fractions:
                for method in cfg["methods"]:
                    _, hparams = unlearning_hparams(
                        {**cfg, "unlearning": {**cfg["unlearning"], "method": method}}
                    )
                    cells.append({**base, "seed": seed, "device": cfg["device"], "strategy": strategy,
                                  "fraction": fraction, "method": method, "unlearning": hparams})  # fmt: skip
    return cells


def cell_key(cell: dict) -> str:
    """What makes a cell's result reusable (the device is not part of it)."""
    return "cell-" + config_key({k: v for k, v in cell.items() if k != "device"})


def _cell_run_config(cell: dict) -> dict:
    cfg = {k: cell[k] for k in CELL_BASE_KEYS}
    return {**cfg, "seed": cell["seed"], "device": cell["device"], "strategies": [],
            "unlearning": {"method": cell["method"], **cell["unlearning"]}}  # fmt: skip


@dataclass
class SeedResources:
    """Everything the cells of one seed share: data, trained models, scores, reference metrics."""

    prepared: Prepared
    original: nn.Module
    retrained: nn.Module | None
    scores: dict
    original_metrics: dict
    retrained_metrics: dict | None
    seconds: dict


def seed_resources(cell: dict, *, store: RunStore | None = None) -> SeedResources:
    """Train (or load) the original and retrained models of a cell's seed and its curvature."""
    cfg = config_mod.normalize(_cell_run_config(cell))
    prepared = prepare(cfg)
    dev = training.resolve_device(cfg["device"])
    original, om = train_model(cfg, prepared, "original", store=store, device=dev)
    retrained, rm = (train_model(cfg, prepared, "retrained", store=store, device=dev)
                     if cfg["retrain"] else (None, {"seconds": None}))  # fmt: skip
    scores, curv_seconds, _ = curvature_scores(cfg, prepared, original, store=store)
    ds, fs = prepared.dataset, prepared.forget_set
    om_metrics = metrics.evaluate(original, ds, fs, reference=retrained, seed=cfg["seed"], **cfg["metrics"])
    rm_metrics = (metrics.evaluate(retrained, ds, fs, seed=cfg["seed"], **cfg["metrics"])
                  if retrained is not None else None)  # fmt: skip
    return SeedResources(prepared, original, retrained, scores, om_metrics, rm_metrics,
                         {"train": om["seconds"], "retrain": rm["seconds"], "curvature": curv_seconds})  # fmt: skip


def run_cell(cell: dict, resources: SeedResources | None = None) -> dict:
    """One sweep cell -> its result; never touches the store (a Ray task can run it).

    Without `resources` it trains the seed's models itself (pure, but slow)."""
    res = resources or seed_resources(cell)
    model, row = apply_strategy(cell["strategy"], cell["fraction"], cell["method"], cell["unlearning"],
                                res.prepared, res.original, res.scores, seed=cell["seed"])  # fmt: skip
    m = metrics.evaluate(model, res.prepared.dataset, res.prepared.forget_set, reference=res.retrained,
                         seed=cell["seed"], **cell["metrics"])  # fmt: skip
    retrain_seconds = res.seconds["retrain"]
    return {"seed": cell["seed"], "strategy": cell["strategy"]["name"],
            "largest": cell["strategy"].get("largest", True), "fraction": cell["fraction"],
            "method": cell["method"], "metrics": compare(m, res.original_metrics, res.retrained_metrics),
            "seconds": row["seconds"], "retrain_ratio": row["seconds"] / retrain_seconds if retrain_seconds else None,
            "n_selected": row["n_selected"], "dead_selected": row["dead_selected"], "lr": row["lr"],
            "steps": row["steps"], "grad_evals": row["grad_evals"],
            "original": res.original_metrics, "retrained": res.retrained_metrics,
            "seconds_reference": res.seconds}  # fmt: skip


def sweep(config: dict | None = None, *, store: RunStore | None = None, progress: Progress | None = None,
          executor: str = "local", address: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Run every cell of a sweep config (resumable: cells already in the store are reused).

    Result: {"config", "cells": [...], "summary": [{"strategy", "largest", "fraction", "method",
    "n", "mean": METRICS, "std": METRICS}]}."""
    progress = progress or _noop
    cfg = config_mod.normalize(config or {}, sweep=True)
    check_executor(executor, address)
    prepared = prepare({**cfg, "seed": cfg["seeds"][0]})
    check_budgets(cfg, prepared)
    cells = sweep_cells(cfg)
    start = time.perf_counter()
    results: list[dict | None] = [None] * len(cells)
    keys = [cell_key(c) for c in cells]
    if store is not None:
        for i, k in enumerate(keys):
            row = store.find_done(k)
            if row is not None and row.get("result"):
                results[i] = {**row["result"], "cached": True}
    pending = [i for i, r in enumerate(results) if r is None]
    progress("sweep", (len(cells) - len(pending)) / max(1, len(cells)),
             f"{len(cells)} cells, {len(cells) - len(pending)} already stored")  # fmt: skip
    if executor == "ray":
        _run_ray(cells, keys, pending, results, store, progress, address)
    else:
        resources: dict[int, SeedResources] = {}
        for done, i in enumerate(pending):
            cell = cells[i]
            if cell["seed"] not in resources:
                resources.clear()  # one seed's models at a time
                progress(
                    "train", (len(cells) - len(pending) + done) / len(cells), f"seed {cell['seed']}: models"
                )
                resources[cell["seed"]] = seed_resources(cell, store=store)
            results[i] = _record_cell(store, cell, keys[i], lambda c=cell: run_cell(c, resources[c["seed"]]))
            progress("cell", (len(cells) - len(pending) + done + 1) / len(cells), _cell_label(results[i]))
    out = {"config": cfg, "cells": results, "summary": summarize(results),
           "seconds": {"total": time.perf_counter() - start}}  # fmt: skip
    progress("done", 1.0, "sweep done")
    return out


def _record_cell(store: RunStore | None, cell: dict, key: str, compute: Callable[[], dict], *,
                 wait: bool = True) -> dict:  # fmt: skip
    """Compute and store one cell, unless another sweep sharing the store already has it.

    `store.claim` makes the check-and-start atomic, so two sweeps on one store never store a
    cell twice: the second waits for the first's result (or, with wait=False, keeps its own
    result unstored). A holder that dies releases its claim."""
    if store is None:
        return compute()
    while (row_id := store.claim(key, cell)) is None:
        row = store.find_done(key)
        if row is not None and row.get("result"):
            return {**row["result"], "cached": True}
        if not wait:
            return compute()
        time.sleep(0.5)
    start = time.perf_counter()
    try:
        result = compute()
    except BaseException as e:
        store.fail(row_id, f"{type(e).__name__}: {e}", time.perf_counter() - start)
        raise
    store.finish(row_id, result, result["seconds"])
    return result


def _run_ray(cells, keys, pending, results, store, progress, address) -> None:
    """One Ray task per seed trains its models and curvature; one task per cell reuses them.

    Workers never see the store: results come back here and only the driver writes them."""
    from core.executors import ray_session

    with ray_session(address) as ray:
        seed_task = ray.remote(num_cpus=1)(seed_resources)
        cell_task = ray.remote(num_cpus=1)(run_cell)
        seed_refs: dict[int, Any] = {}
        futures = {}
        for i in pending:
            seed = cells[i]["seed"]
            if seed not in seed_refs:
                seed_refs[seed] = seed_task.remote(cells[i])
            futures[cell_task.remote(cells[i], seed_refs[seed])] = i
        done = len(cells) - len(pending)
        while futures:
            ready, _ = ray.wait(list(futures), num_returns=1)
            i = futures.pop(ready[0])
            result = ray.get(ready[0])
            results[i] = _record_cell(store, cells[i], keys[i], lambda r=result: r, wait=False)
            done += 1
            progress("cell", done / len(cells), _cell_label(result))


def _cell_label(r: dict) -> str:
    frac = "" if r["fraction"] is None else f"@{r['fraction']:g}"
    side = "" if r["largest"] else " smallest"
    return f"seed {r['seed']} {r['strategy']}{frac}{side} {r['method']}"


def summarize(cells: list[dict]) -> list[dict]:
    """Mean and standard deviation (over seeds) of every numeric metric, per grid point."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["strategy"], c["largest"], c["fraction"], c["method"]), []).append(c)
    out = []
    for (strategy, largest, fraction, method), rows in groups.items():
        keys = list(rows[0]["metrics"]) + ["seconds", "retrain_ratio"]
        mean, std = {}, {}
        for k in keys:
            vals = [r["metrics"].get(k) if k in r["metrics"] else r.get(k) for r in rows]
            vals = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v)]  # fmt: skip
            mean[k] = sum(vals) / len(vals) if vals else None
            std[k] = (math.sqrt(sum((v - mean[k]) ** 2 for v in vals) / (len(vals) - 1))
                      if len(vals) > 1 else (0.0 if vals else None))  # fmt: skip
        out.append({"strategy": strategy, "largest": largest, "fraction": fraction, "method": method,
                    "n": len(rows), "mean": mean, "std": std})  # fmt: skip
    return out


SUMMARY_COLUMNS = ("test_acc", "forget_acc", "asr", "backdoor_removal", "restored_pct", "mia_auc",
                   "relearn_asr", "retrain_ratio")  # fmt: skip


def format_summary(result: dict, columns: tuple[str, ...] = SUMMARY_COLUMNS) -> str:
    """A plain-text table of mean ± std per grid point (columns with no value anywhere are dropped)."""
    rows = result["summary"]
    cols = [c for c in columns if any(r["mean"].get(c) is not None for r in rows)]
    head = f"{'strategy':<22}{'fraction':>9}{'method':>14}{'n':>3}" + "".join(f"{c:>19}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r["strategy"] + ("" if r["largest"] else " (smallest)")
        frac = "-" if r["fraction"] is None else f"{r['fraction']:g}"
        cells = []
        for c in cols:
            m, s = r["mean"].get(c), r["std"].get(c)
            cells.append(f"{'-':>19}" if m is None else f"{m:>11.3f} ± {s:<5.3f}")
        lines.append(f"{name:<22}{frac:>9}{r['method']:>14}{r['n']:>3}" + "".join(cells))
    return "\n".join(lines)
