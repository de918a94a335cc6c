"""Caches around `core`, shared by every browser session of this server.

- `store()`: one RunStore (path from $SAPS_STORE, default runs/): trained models are
  checkpoints in it, keyed by everything that determines their weights, so a model trained
  by one user is loaded, not retrained, by the next.
- `shared(key, compute)`: a small thread-safe LRU for heavy objects (prepared data, loaded
  models, curvature scores). Background job threads use it too, which st.cache_resource
  does not support outside a script run.
Cached objects are shared: never mutate them (deep-copy a model before unlearning).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st
import torch

from core import experiment, metrics
from core.errors import ConfigError
from core.store import RunStore, config_key, default_path

MAX_SHARED = 24
_LOCK = threading.Lock()
_SHARED: OrderedDict[str, Any] = OrderedDict()


def shared(key: str, compute: Callable[[], Any]) -> Any:
    """Value for `key` from the process-wide LRU, computing it on a miss (outside the lock)."""
    with _LOCK:
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key]
    value = compute()
    with _LOCK:
        _SHARED[key] = value
        while len(_SHARED) > MAX_SHARED:
            _SHARED.popitem(last=False)
    return value


def clear() -> None:
    """Drop every cached object (tests call this between AppTest instances)."""
    with _LOCK:
        _SHARED.clear()
    st.cache_data.clear()
    st.cache_resource.clear()


@st.cache_resource(show_spinner=False)
def _store(path: str) -> RunStore:
    return RunStore(path)


def store() -> RunStore:
    return _store(str(default_path()))


def store_for(path: str) -> RunStore:
    """A store by explicit path (job threads get the path from the page, not the env)."""
    return shared(f"store:{path}", lambda: RunStore(path))


# -- keys (pure) -----------------------------------------------------------------------------
DATA_KEYS = ("dataset", "root", "train_size", "test_size", "seed", "scenario")


def data_key(cfg: dict) -> str:
    return "data:" + config_key({k: cfg[k] for k in DATA_KEYS})


# -- loaders (thread-safe, usable in jobs) ----------------------------------------------------
def prepared(cfg: dict) -> experiment.Prepared:
    """Data set + forget scenario of a normalized config (ConfigError/DataError on bad input)."""
    return shared(data_key(cfg), lambda: experiment.prepare(cfg))


def _stored(st_: RunStore, name: str) -> bool:
    """Whether the store holds artifact `name` (tensors and sidecar), without reading it."""
    return st_.has_checkpoint(name) and (st_.checkpoints / f"{name}.json").is_file()


def has_model(cfg: dict, role: str, st_: RunStore) -> bool:
    return _stored(st_, experiment.model_key(cfg, role))


def model(cfg: dict, role: str, st_: RunStore) -> tuple[torch.nn.Module, dict] | None:
    """The trained model (eval mode, shared: do not mutate) and its meta, or None if untrained."""
    if not has_model(cfg, role, st_):
        return None
    key = f"model:{st_.root}:{experiment.model_key(cfg, role)}"
    return shared(
        key, lambda: experiment.train_model(cfg, prepared(cfg), role, store=st_, device=torch.device("cpu"))
    )


def private_copy(m: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of a shared model that may be changed freely."""
    return copy.deepcopy(m)


def model_metrics(cfg: dict, role: str, st_: RunStore) -> dict | None:
    loaded = model(cfg, role, st_)
    if loaded is None:
        return None
    ref = model(cfg, "retrained", st_) if role == "original" else None
    key = f"metrics:{st_.root}:{experiment.model_key(cfg, role)}:{ref is not None}"
    p = prepared(cfg)
    return shared(
        key,
        lambda: metrics.evaluate(loaded[0], p.dataset, p.forget_set, reference=ref[0] if ref else None),
    )


def _original(cfg: dict, st_: RunStore) -> torch.nn.Module:
    loaded = model(cfg, "original", st_)
    if loaded is None:
        raise ConfigError("model", "train the original model first (page 2 · Train)")
    return loaded[0]


def curvature(cfg: dict, st_: RunStore, progress: Callable[[int, int], None] | None = None) -> dict:
    """diag H of θ* per config "curvature", through the engine's store-cached path
    (core.experiment.curvature_scores), kept in memory per store and curvature key.
    `progress(done, total)` per chunk of samples (a cancelled job stops there)."""
    key = f"curv:{st_.root}:{experiment.curvature_key(cfg)}"
    return shared(
        key, lambda: experiment.curvature_scores(cfg, prepared(cfg), _original(cfg, st_), st_, progress)[0]
    )


def cached_curvature(cfg: dict, st_: RunStore) -> dict | None:
    """The curvature scores when already computed (in memory or in the store), else None."""
    key = f"curv:{st_.root}:{experiment.curvature_key(cfg)}"
    with _LOCK:
        if key in _SHARED:
            return _SHARED[key]
    return curvature(cfg, st_) if _stored(st_, experiment.curvature_key(cfg)) else None


# -- time estimates before a job starts -------------------------------------------------------
STRATEGY_OVERHEAD_S = 1.5  # metrics of one strategy (MIA, relearning curve) on digits, measured


def n_parameters(cfg: dict) -> int:
    """Parameters of the config's model for its data set (built once, never trained)."""
    from core.models import build, count_parameters

    ds = prepared(cfg).dataset
    key = f"nparams:{cfg['model']}:{ds.shape}:{len(ds.classes)}"
    return shared(key, lambda: count_parameters(build(cfg["model"], ds)))


def _measured(cfg: dict, st_: RunStore) -> dict | None:
    """Seconds measured by the newest finished run on the same data set and model, or None."""
    same = ("dataset", "root", "train_size", "model")
    for row in st_.list_runs(kind="run", limit=30):
        rcfg, res = row.get("config") or {}, row.get("result") or {}
        if row["status"] == "done" and all(rcfg.get(k) == cfg.get(k) for k in same) and res.get("seconds"):
            return {"config": rcfg, "seconds": res["seconds"], "rows": res.get("strategies") or []}
    return None


def estimate(cfg: dict, st_: RunStore, kind: str = "run", models: int = 1) -> float:
    """Seconds job `kind` ("run", "train", "curvature", "deep_eval" with `models` seeds) of the
    normalized `cfg` will take: trained models and a curvature already in the store count 0.
    One epoch = n_train × parameters × the rate measured in benchmarks/results/train.json (or,
    better, the newest stored run on the same data set and model); a curvature ≈ 3 epochs; a
    strategy ≈ its update plus STRATEGY_OVERHEAD_S + 0.3 epochs of metrics."""
    import os

    from ui import jobs

    p = prepared(cfg)
    epoch = jobs.seconds_per_epoch(cfg["dataset"], cfg["model"], len(p.dataset.y_train), n_parameters(cfg))
    curv, update = 3.0 * epoch, 0.0
    measured = _measured(cfg, st_)
    if measured:
        secs, rcfg = measured["seconds"], measured["config"]
        epoch = (secs.get("train") or 0.0) / max(1, (rcfg.get("train") or {}).get("epochs") or 1) or epoch
        if rcfg.get("curvature") == cfg["curvature"] and secs.get("curvature"):
            curv = secs["curvature"]
        rows = measured["rows"]
        update = sum(r.get("seconds_update") or 0.0 for r in rows) / max(1, len(rows))
    train = epoch * cfg["train"]["epochs"]
    per_strategy = update + STRATEGY_OVERHEAD_S + 0.3 * epoch
    n = len(cfg["strategies"])
    if kind == "deep_eval":
        workers = max(1, min(models, os.cpu_count() or 1))
        return models * (2 * train + n * per_strategy) / workers
    curvature_s = 0.0 if _stored(st_, experiment.curvature_key(cfg)) else curv
    if kind == "curvature":
        return curvature_s
    roles = ["original", "retrained"] if cfg.get("retrain", True) else ["original"]
    total = sum(0.0 if has_model(cfg, role, st_) else train for role in roles)
    if kind == "run" and n:
        total += curvature_s + n * per_strategy
    return total


def estimate_config(config: dict, st_: RunStore, kind: str = "run", models: int = 1) -> float | None:
    """`estimate` of a config not yet normalized; None when it is invalid (the page says why
    when the button is pressed)."""
    from core import config as core_config
    from core.errors import SapsError

    try:
        return estimate(core_config.normalize(config), st_, kind, models)
    except SapsError:
        return None


# -- job bodies (run in a thread: no Streamlit calls) -----------------------------------------
Job = Callable[[Callable[[str, float, str], None]], Any]


def experiment_job(cfg: dict, store_path: str) -> Job:
    """`fn(progress)` running core.experiment.run(cfg) against the store at `store_path`."""
    return lambda progress: experiment.run(cfg, store=store_for(store_path), progress=progress)


def train_job(cfg: dict, store_path: str) -> Job:
    """`fn(progress)` training (or loading) the original and the retrained model."""
    return experiment_job({**cfg, "strategies": []}, store_path)


def curvature_job(cfg: dict, store_path: str) -> Job:
    """`fn(progress)` computing (or loading) diag H of θ*."""

    def fn(progress: Callable[[str, float, str], None]) -> dict:
        label = f"diag H ({cfg['curvature']['method']}) at θ*"
        progress("curvature", 0.0, f"{label}…")

        def samples(done: int, total: int) -> None:
            progress("curvature", done / max(1, total), f"{label}: {done}/{total} samples")

        return curvature(cfg, store_for(store_path), samples)

    return fn


def estimators_job(cfg: dict, store_path: str) -> Job:
    """`fn(progress)` ranking every curvature estimator's diag H against the others."""
    from ui import analysis

    return lambda progress: analysis.estimator_agreement(
        cfg, lambda c: curvature(c, store_for(store_path)), progress
    )


def deep_eval_key(run_id: int, models: int) -> str:
    return f"deep_eval:{run_id}:{models}"


def deep_eval_job(cfg: dict, store_path: str, models: int, run_id: int | None = None) -> Job:
    """`fn(progress)` running core.deep_eval.forget_quality_run with `models` training seeds;
    with the `run_id` it evaluates, the outcome is a store row (kind "deep_eval"), so a link to
    the run shows it in any browser (a cancelled or failed one is marked failed)."""
    import json

    from core import deep_eval

    def fn(progress: Callable[[str, float, str], None]) -> dict:
        st_ = store_for(store_path)
        if run_id is None:
            return deep_eval.forget_quality_run(cfg, models, st_, progress)
        key = deep_eval_key(run_id, models)
        with st_.recording({"run": run_id, "models": models}, kind="deep_eval", key=key) as rec:
            fq = json.loads(
                json.dumps(deep_eval.forget_quality_run(cfg, models, st_, progress), default=float)
            )
            st_.finish(rec["id"], fq, fq.get("seconds") or 0.0)
            rec["finished"] = True
        return fq

    return fn


def stored_deep_eval(st_: RunStore, run_id: int | None, models: int) -> dict | None:
    """The newest finished deep evaluation of run `run_id` with `models` seeds, as the Compare
    page keeps it ({"run", **result}), or None."""
    row = st_.find_done(deep_eval_key(run_id, models)) if run_id else None
    return {"run": run_id, **row["result"]} if row and row.get("result") else None


def predictions_job(cfg: dict, row: dict, store_path: str, key: str) -> Job:
    """`fn(progress)` returning `predictions` for one strategy row, computed once per `key`."""
    return lambda progress: shared(key, lambda: predictions(cfg, row, store_for(store_path)))


def predictions(cfg: dict, row: dict, st_: RunStore, n: int = 16) -> dict:
    """θ* and unlearned predictions on the first `n` triggered test images for one strategy row
    (its mask and method rebuilt by the engine's own core.experiment.apply_strategy)."""
    from core.artifacts import needs_curvature
    from core.training import predict

    original = private_copy(_original(cfg, st_))
    p = prepared(cfg)
    method, hp = experiment.unlearning_hparams(cfg, row["method"])
    need = needs_curvature([row["strategy"]], [(method, hp)])
    inputs = experiment.shared_inputs(cfg, p, original, curvature=need, store=st_)
    new, _ = experiment.apply_strategy(
        row["strategy"], row.get("fraction"), method, hp, p, original, inputs, seed=cfg["seed"]
    )
    fs = p.forget_set
    x, _ = fs.eval_sets["triggered_test"]
    x_true = fs.eval_sets["triggered_test_true"][1]
    return {
        "images": x[:n].numpy(),
        "before": predict(original, x[:n]).argmax(1).tolist(),
        "after": predict(new, x[:n]).argmax(1).tolist(),
        "true": x_true[:n].tolist(),
    }
