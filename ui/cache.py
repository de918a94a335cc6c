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

from core import config as core_config
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


def curvature_key(cfg: dict) -> str:
    cv = cfg["curvature"]
    return f"curv:{experiment.model_key(cfg, 'original')}:{cv['method']}:{cv['data']}:{cv['probes']}"


# -- loaders (thread-safe, usable in jobs) ----------------------------------------------------
def normalize(cfg: dict) -> dict:
    return core_config.normalize(cfg)


def prepared(cfg: dict) -> experiment.Prepared:
    """Data set + forget scenario of a normalized config (ConfigError/DataError on bad input)."""
    return shared(data_key(cfg), lambda: experiment.prepare(cfg))


def has_model(cfg: dict, role: str, st_: RunStore) -> bool:
    name = experiment.model_key(cfg, role)
    return st_.has_checkpoint(name) and (st_.checkpoints / f"{name}.json").is_file()


def model(cfg: dict, role: str, st_: RunStore) -> tuple[torch.nn.Module, dict] | None:
    """The trained model (eval mode, shared: do not mutate) and its meta, or None if untrained."""
    if not has_model(cfg, role, st_):
        return None
    key = f"model:{st_.root}:{experiment.model_key(cfg, role)}"
    return shared(key, lambda: experiment.train_model(cfg, prepared(cfg), role, store=st_,
                                                      device=torch.device("cpu")))  # fmt: skip


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
    return shared(key, lambda: metrics.evaluate(loaded[0], p.dataset, p.forget_set,
                                                reference=ref[0] if ref else None))  # fmt: skip


def curvature_data(cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The (inputs, targets) the curvature is measured on (config curvature.data)."""
    fs = prepared(cfg).forget_set
    which = cfg["curvature"]["data"]
    if which == "retain":
        return fs.retain
    if which == "forget":
        return fs.forget
    if which == "corrected":
        return fs.corrected
    return fs.x_train, fs.y_train


def curvature(cfg: dict, st_: RunStore, progress: Callable[[int, int], None] | None = None) -> dict:
    """diag H of the original model per config curvature.method/data (cached per model)."""
    from core.curvature import hessian_diagonal

    def compute() -> dict:
        loaded = model(cfg, "original", st_)
        if loaded is None:
            raise ConfigError("model", "train the original model first (page 2 · Train)")
        x, y = curvature_data(cfg)
        cv = cfg["curvature"]
        opts = {"probes": cv["probes"]} if cv["method"] == "hutchinson" else {}
        return hessian_diagonal(loaded[0], x, y, cv["method"], seed=cfg["seed"], progress=progress, **opts)

    return shared(curvature_key(cfg) + f":{st_.root}", compute)


def cached_curvature(cfg: dict, st_: RunStore) -> dict | None:
    """The curvature scores if already computed (no work), else None."""
    key = curvature_key(cfg) + f":{st_.root}"
    with _LOCK:
        return _SHARED.get(key)


# -- job bodies (run in a thread: no Streamlit calls) -----------------------------------------
def experiment_job(cfg: dict, store_path: str) -> Callable[[Callable[[str, float, str], None]], dict]:
    """`fn(progress)` running core.experiment.run(cfg) against the store at `store_path`.

    If the engine cannot run strategies yet, the models are still trained and evaluated and
    the result says so in "note".
    """

    def fn(progress: Callable[[str, float, str], None]) -> dict:
        st_ = store_for(store_path)
        try:
            return experiment.run(cfg, store=st_, progress=progress)
        except NotImplementedError as e:
            if not cfg.get("strategies"):
                raise
            progress("train", 0.0, "unlearning is not available yet: training only")
            result = experiment.run({**cfg, "strategies": []}, store=st_, progress=progress)
            result["note"] = f"strategies skipped: {e}"
            return result

    return fn


def train_job(cfg: dict, store_path: str) -> Callable[[Callable[[str, float, str], None]], dict]:
    """`fn(progress)` training (or loading) the original and the retrained model."""
    return experiment_job({**cfg, "strategies": []}, store_path)


def predictions(cfg: dict, row: dict, st_: RunStore, progress=None, n: int = 16) -> dict:
    """θ* and unlearned predictions on the first `n` triggered test images for one strategy row."""
    from core import selection, unlearning

    loaded = model(cfg, "original", st_)
    if loaded is None:
        raise ConfigError("model", "train the original model first (page 2 · Train)")
    original = private_copy(loaded[0])
    fs = prepared(cfg).forget_set
    scores = curvature(cfg, st_) if row["name"] == "saps" else None
    x_f, y_f = fs.forget
    mask = selection.build_mask(row["name"], original, fraction=row.get("fraction"),
                                largest=row.get("largest", True), scores=scores, forget_inputs=x_f,
                                forget_targets=y_f, inputs=fs.x_train, targets=fs.y_train, seed=cfg["seed"])  # fmt: skip
    hp = {k: v for k, v in cfg["unlearning"].items() if k != "method"}
    cb = (lambda i, total, msg: progress("unlearn", i / max(total, 1), msg)) if progress else None
    new, _ = unlearning.unlearn(original, mask, fs, method=cfg["unlearning"]["method"], seed=cfg["seed"],
                                progress=cb, **hp)  # fmt: skip
    x, _ = fs.eval_sets["triggered_test"]
    x_true = fs.eval_sets["triggered_test_true"][1]
    from core.training import predict

    return {"images": x[:n].numpy(), "before": predict(loaded[0], x[:n]).argmax(1).tolist(),
            "after": predict(new, x[:n]).argmax(1).tolist(), "true": x_true[:n].tolist()}  # fmt: skip
