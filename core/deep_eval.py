"""Deep evaluation: forget quality over M training seeds on ONE fixed forget set.

Forget quality (NeurIPS 2023 unlearning challenge, Triantafillou et al. 2024) compares, per
forget example, the distribution of the logit-scaled confidence φ = log p_y − log(1 − p_y)
under M unlearned models with the one under M retrained models (core.metrics.forget_quality).
Here the M models differ only in their training seed s_i = seed + i (i = 0 … M − 1); D_f is
drawn once, with the scenario seed (default: the config's seed), so every model sees the same
D_f. For each s_i: θ* trained on D_r ∪ D_f, the reference retrained on D_r ∪ D̃_f, and each
configured strategy's unlearned model (curvature, live mask, mask and method as in a run).
φ is taken on D_f as trained (inputs and labels as the original model saw them). s_0 = seed
with the default scenario seed gives the models of the ordinary run, so they are reused from
the store.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np
import torch
from torch import nn

from core import config as config_mod
from core import metrics, selection, training, unlearning
from core.artifacts import Prepared, check, is_budgeted, needs_curvature, prepare, shared_inputs, train_model
from core.errors import ConfigError
from core.experiment import Progress, apply_strategy, unlearning_hparams
from core.store import RunStore


def _noop(stage: str, fraction: float, message: str) -> None:
    pass


def training_seeds(seed: int, models: int) -> list[int]:
    """The M training seeds s_i = seed + i."""
    return [seed + i for i in range(models)]


def confidences(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """φ per sample (float64, shape N) of `model` on (inputs N×C×H×W, targets N)."""
    return metrics.logit_scaled_confidence(training.predict(model, inputs), targets)


def forget_quality_run(
    config: dict,
    models: int = 16,
    store: RunStore | None = None,
    progress: Progress | None = None,
    *,
    workers: int | None = None,
) -> dict[str, Any]:
    """Forget quality of θ* and of every configured strategy against M retrained models.

    Returns {"models": M, "seeds": [s_i], "forget_quality": {row label: value in [0, 1]},
    "original": value for θ* itself, "labels": [{"label", "name", "fraction", "method",
    "method_label"}], "per_example": {"epsilon": {label: [ε per D_f example]}},
    "confidences": {"retrained" | "original" | label: [[φ]] of shape M × |D_f|},
    "scenario": ForgetSet.summary(), "workers", "seconds": total seconds}. The seeds run in
    `workers` processes of one thread each (default: one per core, at most M); trained models
    are cached in `store` when given. Raises ConfigError before any training on bad input."""
    progress = progress or _noop
    start = time.perf_counter()
    if not isinstance(models, int) or isinstance(models, bool) or not 3 <= models <= 1000:
        raise ConfigError(
            "--models", f"need an integer in [3, 1000] (ε needs M ≥ 3 models per side), got {models!r}"
        )
    cfg = config_mod.normalize(config)
    if cfg["scenario"].get("seed") is None:  # one D_f for every training seed
        cfg["scenario"] = {**cfg["scenario"], "seed": cfg["seed"]}
    progress("data", 0.0, f"loading {cfg['dataset']}")
    prepared = prepare(cfg)
    check(cfg, prepared)
    method = cfg["unlearning"]["method"]
    labels: list[dict] = []
    for strategy in cfg["strategies"]:
        fraction = strategy.get("fraction") if is_budgeted(strategy) else None
        label = _unique(
            selection.strategy_label(strategy, fraction), {"original", "retrained", *_names(labels)}
        )
        row = {"label": label, "name": strategy["name"], "fraction": fraction, "method": method}
        labels.append({**row, "method_label": unlearning.METHODS[method].label})
    seeds = training_seeds(cfg["seed"], models)
    workers = max(1, min(models, workers or os.cpu_count() or 1))
    root = str(store.root) if store is not None else None
    per_seed: dict[int, dict[str, np.ndarray]] = {}
    progress("models", 0.0, f"{models} seeds on {workers} worker(s)")
    if workers == 1:
        for seed in seeds:
            per_seed[seed] = seed_confidences(cfg, seed, root, prepared)
            progress("models", len(per_seed) / models, f"seed {seed} done ({len(per_seed)}/{models})")
    else:
        spawn = multiprocessing.get_context("spawn")  # a fork would inherit torch's thread pools
        pool = ProcessPoolExecutor(workers, mp_context=spawn, initializer=_one_thread)
        try:
            with bare_main():  # the workers start during the submits
                futures = {pool.submit(seed_confidences, cfg, seed, root): seed for seed in seeds}
            for future in as_completed(futures):
                per_seed[futures[future]] = future.result()
                progress(
                    "models",
                    len(per_seed) / models,
                    f"seed {futures[future]} done ({len(per_seed)}/{models})",
                )
        except BaseException:  # e.g. a cancelled job: drop the queued seeds instead of waiting
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    keys = ["retrained", "original"] + _names(labels)
    stacked = {k: np.stack([per_seed[s][k] for s in seeds]) for k in keys}
    reference = stacked["retrained"]
    quality = {k: metrics.forget_quality(stacked[k], reference) for k in keys[1:]}
    result = {
        "models": models,
        "seeds": seeds,
        "workers": workers,
        "scenario": prepared.forget_set.summary(),
        "forget_quality": {k: quality[k] for k in keys[2:]},
        "original": quality["original"],
        "labels": labels,
        "per_example": {"epsilon": {k: metrics.epsilons(stacked[k], reference).tolist() for k in keys[1:]}},
        "confidences": {k: v.tolist() for k, v in stacked.items()},
        "seconds": time.perf_counter() - start,
    }
    progress("done", 1.0, "deep evaluation done")
    return result


def seed_confidences(
    cfg: dict, seed: int, store_root: str | None = None, prepared: Prepared | None = None
) -> dict[str, np.ndarray]:
    """φ on D_f as trained of the models of training seed `seed`: "original" (θ*), "retrained",
    and one entry per configured strategy (its row label, as `forget_quality_run` names it).
    Runs in a worker process: only the config, the seed and the store folder travel."""
    cfg = {**cfg, "seed": seed}
    store = RunStore(store_root) if store_root is not None else None
    prepared = prepared or prepare(cfg)  # D_f does not depend on the training seed
    x_f, y_f = prepared.forget_set.forget
    original, _ = train_model(cfg, prepared, "original", store=store)
    retrained, _ = train_model(cfg, prepared, "retrained", store=store)
    out = {"original": confidences(original, x_f, y_f), "retrained": confidences(retrained, x_f, y_f)}
    if not cfg["strategies"]:
        return out
    method, hparams = unlearning_hparams(cfg)
    curvature = needs_curvature(cfg["strategies"], [(method, hparams)])
    shared = shared_inputs(cfg, prepared, original, curvature=curvature, store=store)
    for strategy in cfg["strategies"]:
        model, row = apply_strategy(
            strategy, strategy.get("fraction"), method, hparams, prepared, original, shared, seed=seed
        )
        out[_unique(row["label"], out)] = confidences(model, x_f, y_f)
    return out


@contextlib.contextmanager
def bare_main() -> Iterator[None]:
    """While spawned workers start: a bare `__main__`, so they do not re-run the parent's main
    script. A spawned child imports the parent's `__main__` from its file; under Streamlit that
    is the page script (run as `__main__`), which then ran in every worker without a session —
    hundreds of "missing ScriptRunContext" lines in the server log and seconds per worker. The
    workers need only `core` (their function is `seed_confidences`)."""
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _one_thread() -> None:
    torch.set_num_threads(1)  # one process per core: more threads would oversubscribe them


def _names(labels: list[dict]) -> list[str]:
    return [row["label"] for row in labels]


def _unique(label: str, taken: Any) -> str:
    """Two configured strategies with one label (e.g. the same twice) keep apart as "label #2"."""
    out, k = label, 1
    while out in taken:
        k += 1
        out = f"{label} #{k}"
    return out
