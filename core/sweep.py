"""Sweeps: strategies × fractions × methods × seeds, one stored row per cell (resumable).

`sweep(config)` expands a normalized sweep config into cells (each a full, JSON-able recipe),
reuses the cells already in the store, and runs the rest one seed at a time — locally, or on
Ray (`executor="ray"`: one task per seed trains its models, one task per cell reuses them; only
the driver writes the store). `store.claim` makes two sweeps sharing a store compute and store
each cell once. Every cell reports the full cost of its strategy (core.experiment.apply_strategy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from core import config as config_mod
from core import metrics, training, unlearning
from core.artifacts import (
    Prepared,
    Shared,
    check,
    is_budgeted,
    needs_curvature,
    prepare,
    shared_inputs,
    train_model,
)
from core.errors import ConfigError
from core.executors import check_executor
from core.experiment import Progress, apply_strategy, unlearning_hparams
from core.store import RunStore, config_key

CELL_BASE_KEYS = ("dataset", "root", "train_size", "test_size", "model", "scenario", "train", "curvature")
CELL_BASE_KEYS += ("retrain", "metrics")


def _noop(stage: str, fraction: float, message: str) -> None:
    pass


def _fractions(cfg: dict, strategy: dict) -> list[float | None]:
    if not is_budgeted(strategy):
        return [None]
    if strategy.get("fraction") is not None:
        return [strategy["fraction"]]
    if strategy.get("threshold") is not None or strategy.get("quantile") is not None:
        return [None]
    if cfg.get("fractions"):
        return cfg["fractions"]
    raise ConfigError(
        "fractions", f"strategy {strategy['name']!r} has no fraction; give it one or add a 'fractions' list"
    )


def sweep_cells(cfg: dict) -> list[dict]:
    """The grid of a normalized sweep config as cell specs (JSON-able, each a full recipe)."""
    base = {k: cfg[k] for k in CELL_BASE_KEYS}
    cells = []
    for seed in cfg["seeds"]:
        for strategy in cfg["strategies"]:
            for fraction in _fractions(cfg, strategy):
                for method in cfg["methods"]:
                    _, hparams = unlearning_hparams(
                        {**cfg, "unlearning": {**cfg["unlearning"], "method": method}}
                    )
                    cell = {"seed": seed, "device": cfg["device"], "strategy": strategy, "fraction": fraction}
                    cells.append({**base, **cell, "method": method, "unlearning": hparams})
    return cells


def cell_key(cell: dict) -> str:
    """What makes a cell's result reusable: the recipe (not the device) and, from revision 2 on,
    the method's revision — a rule whose results changed does not reuse cells of its former code.
    (Revision 1 adds nothing, so the keys of stores written before revisions existed still hold.)"""
    recipe = {k: v for k, v in cell.items() if k != "device"}
    revision = unlearning.METHODS[cell["method"]].revision
    return "cell-" + config_key(recipe if revision == 1 else {**recipe, "method_revision": revision})


def _cell_run_config(cell: dict) -> dict:
    cfg = {k: cell[k] for k in CELL_BASE_KEYS}
    unlearning = {"method": cell["method"], **cell["unlearning"]}
    return {**cfg, "seed": cell["seed"], "device": cell["device"], "strategies": [], "unlearning": unlearning}


@dataclass
class SeedResources:
    """Everything the cells of one seed share: data, trained models, curvature and live mask,
    reference metrics, measured seconds (train, retrain, curvature, liveness)."""

    prepared: Prepared
    original: nn.Module
    retrained: nn.Module | None
    shared: Shared
    original_metrics: dict
    retrained_metrics: dict | None
    seconds: dict


def seed_resources(cell: dict, *, curvature: bool = True, store: RunStore | None = None) -> SeedResources:
    """Train (or load) the original and retrained models of a cell's seed, the curvature (when
    `curvature`) and the live mask."""
    cfg = config_mod.normalize(_cell_run_config(cell))
    prepared = prepare(cfg)
    dev = training.resolve_device(cfg["device"])
    original, om = train_model(cfg, prepared, "original", store=store, device=dev)
    retrained, rm = None, {"seconds": None}
    if cfg["retrain"]:
        retrained, rm = train_model(cfg, prepared, "retrained", store=store, device=dev)
    shared = shared_inputs(cfg, prepared, original, curvature=curvature, store=store)
    ds, fs = prepared.dataset, prepared.forget_set
    opts = {"seed": cfg["seed"], **cfg["metrics"]}
    om_metrics = metrics.evaluate(original, ds, fs, reference=retrained, **opts)
    rm_metrics = metrics.evaluate(retrained, ds, fs, **opts) if retrained is not None else None
    seconds = {
        "train": om["seconds"],
        "retrain": rm["seconds"],
        "curvature": shared.curvature_seconds,
        "liveness": shared.liveness_seconds,
    }
    return SeedResources(prepared, original, retrained, shared, om_metrics, rm_metrics, seconds)


COST_KEYS = ("seconds_select", "seconds_select_parts", "seconds_update", "seconds", "seconds_amortized")


LOG_FLAGS = (
    "guard_failed",
    "stopped_by",
    "rewinds",
    "changed",
    "note",
    "solver",
    "curvature",
    "iters",
    "rel_residual",
    "converged",
    "damping",
    "applied",
)


def run_cell(cell: dict, resources: SeedResources | None = None) -> dict:
    """One sweep cell -> its result; never touches the store (a Ray task can run it).

    Without `resources` it trains the seed's models itself (pure, but slow)."""
    res = resources or seed_resources(cell)
    strategy, fraction, method = cell["strategy"], cell["fraction"], cell["method"]
    model, row = apply_strategy(
        strategy,
        fraction,
        method,
        cell["unlearning"],
        res.prepared,
        res.original,
        res.shared,
        seed=cell["seed"],
        retrain_seconds=res.seconds["retrain"],
    )
    ds, fs = res.prepared.dataset, res.prepared.forget_set
    m = metrics.evaluate(model, ds, fs, reference=res.retrained, seed=cell["seed"], **cell["metrics"])
    out = {"seed": cell["seed"], "strategy": cell["strategy"]["name"]}
    out.update({k: row[k] for k in ("label", "largest", "fraction", "method", "method_label")})
    out["metrics"] = metrics.compare(m, res.original_metrics, res.retrained_metrics, len(ds.y_test))
    out.update({k: row[k] for k in COST_KEYS + ("retrain_ratio", "n_selected", "dead_selected")})
    out.update({k: row[k] for k in ("lr", "steps", "grad_evals")})
    # the method's honesty flags travel with the cell (a guard that failed, a solve not applied)
    out["log"] = {k: row["log"][k] for k in LOG_FLAGS if k in row["log"]}
    out.update(original=res.original_metrics, retrained=res.retrained_metrics, seconds_reference=res.seconds)
    return out


def sweep(
    config: dict | None = None,
    *,
    store: RunStore | None = None,
    progress: Progress | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Run every cell of a sweep config (resumable: cells already in the store are reused).

    Result: {"config", "cells": [...], "summary": [{"label", "strategy", "largest", "fraction",
    "method", "method_label", "n", "mean": METRICS + costs, "std": ...}], "seconds"}."""
    progress = progress or _noop
    cfg = config_mod.normalize(config or {}, sweep=True)
    check_executor(executor, address)
    check(cfg, prepare({**cfg, "seed": cfg["seeds"][0]}))
    cells = sweep_cells(cfg)
    methods = [unlearning_hparams(cfg, m) for m in cfg["methods"]]
    curvature = needs_curvature(cfg["strategies"], methods)
    start = time.perf_counter()
    results: list[dict | None] = [None] * len(cells)
    keys = [cell_key(c) for c in cells]
    if store is not None:
        for i, k in enumerate(keys):
            row = store.find_done(k)
            if row is not None and row.get("result"):
                results[i] = {**row["result"], "cached": True}
    pending = [i for i, r in enumerate(results) if r is None]
    n_done = len(cells) - len(pending)
    progress("sweep", n_done / max(1, len(cells)), f"{len(cells)} cells, {n_done} already stored")
    if executor == "ray":
        _run_ray(cells, keys, pending, results, store, progress, address, curvature)
    else:
        resources: dict[int, SeedResources] = {}
        for done, i in enumerate(pending):
            cell = cells[i]
            if cell["seed"] not in resources:
                resources.clear()  # one seed's models at a time
                progress("train", (n_done + done) / len(cells), f"seed {cell['seed']}: models")
                resources[cell["seed"]] = seed_resources(cell, curvature=curvature, store=store)
            res = resources[cell["seed"]]
            results[i] = _record_cell(store, cell, keys[i], lambda c=cell, r=res: run_cell(c, r))
            progress("cell", (n_done + done + 1) / len(cells), _cell_label(results[i]))
    out = {
        "config": cfg,
        "cells": results,
        "summary": summarize(results),
        "seconds": {"total": time.perf_counter() - start},
    }
    progress("done", 1.0, "sweep done")
    return out


def _record_cell(
    store: RunStore | None, cell: dict, key: str, compute: Callable[[], dict], *, wait: bool = True
) -> dict:
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
        time.sleep(0.5)  # polling the other sweep's claim
    start = time.perf_counter()
    try:
        result = compute()
    except BaseException as e:
        store.fail(row_id, f"{type(e).__name__}: {e}", time.perf_counter() - start)
        raise
    store.finish(row_id, result, result["seconds"])
    return result


def _run_ray(cells, keys, pending, results, store, progress, address, curvature: bool) -> None:
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
                seed_refs[seed] = seed_task.remote(cells[i], curvature=curvature)
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
    return f"seed {r['seed']} {r['label']} {r['method']}"


SUMMARY_COSTS = ("seconds_select", "seconds_update", "seconds", "seconds_amortized", "retrain_ratio")


def summarize(cells: list[dict]) -> list[dict]:
    """Mean and sample standard deviation (over seeds) of every numeric metric and cost, per
    grid point (label, method)."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["label"], c["strategy"], c["largest"], c["fraction"], c["method"]), []).append(c)
    out = []
    for (label, strategy, largest, fraction, method), rows in groups.items():
        mean, std = {}, {}
        for k in list(rows[0]["metrics"]) + list(SUMMARY_COSTS):
            vals = [r["metrics"].get(k) if k in r["metrics"] else r.get(k) for r in rows]
            vals = [float(v) for v in vals if _is_number(v)]
            mean[k] = sum(vals) / len(vals) if vals else None
            if len(vals) > 1:
                std[k] = math.sqrt(sum((v - mean[k]) ** 2 for v in vals) / (len(vals) - 1))
            else:
                std[k] = 0.0 if vals else None
        point = {"label": label, "strategy": strategy, "largest": largest, "fraction": fraction}
        out.append({**point, "method": method, "method_label": rows[0].get("method_label", method)})
        out[-1].update(n=len(rows), mean=mean, std=std)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


SUMMARY_COLUMNS = ("test_acc", "forget_acc", "asr", "backdoor_removal", "restored_pct", "mia_auc")
SUMMARY_COLUMNS += ("relearn_success", "seconds", "retrain_ratio")


def format_summary(result: dict, columns: tuple[str, ...] = SUMMARY_COLUMNS) -> str:
    """A plain-text table of mean ± std per grid point (columns with no value anywhere are
    dropped); seconds and retrain_ratio are the full cost (selection + update)."""
    rows = result["summary"]
    cols = [c for c in columns if any(r["mean"].get(c) is not None for r in rows)]
    width = max([28] + [len(r["label"]) + 2 for r in rows])
    head = f"{'strategy':<{width}}{'method':>18}{'n':>3}" + "".join(f"{c:>19}" for c in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for c in cols:
            m, s = r["mean"].get(c), r["std"].get(c)
            cells.append(f"{'-':>19}" if m is None else f"{m:>11.3f} ± {s:<5.3f}")
        lines.append(f"{r['label']:<{width}}{r['method']:>18}{r['n']:>3}" + "".join(cells))
    return "\n".join(lines)
