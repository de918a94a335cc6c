"""What one run computes once and caches in the store, before any strategy: the data and its
forget scenario, θ* and the retrained reference, diag H at θ*, and the live mask.

Each cached item is keyed by everything that determines it and stored with the seconds it took
to compute, so a result reports its measured cost even when it came from the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core import config as config_mod
from core import data, models, scenarios, selection, training
from core.errors import ConfigError
from core.functional import trainable
from core.store import RunStore, config_key

Scores = dict[str, torch.Tensor]
Masks = dict[str, torch.Tensor]


@dataclass
class Prepared:
    """The data side of a run: the dataset and its forget scenario."""

    dataset: data.Dataset
    forget_set: scenarios.ForgetSet


def prepare(cfg: dict) -> Prepared:
    """Load the data set and build the scenario of a normalized config (ConfigError/DataError).

    D_f is drawn with the scenario's own `seed` when given, else with the run's seed."""
    ds = data.load(cfg["dataset"], cfg["root"], seed=0)
    if cfg["train_size"] or cfg["test_size"]:
        ds = ds.subset(cfg["train_size"], cfg["test_size"], seed=0)
    return Prepared(ds, scenarios.from_config(ds, cfg["scenario"], cfg["seed"]))


def check(cfg: dict, prepared: Prepared) -> None:
    """Everything that can be refused before training: the configuration's feasibility on this
    data (empty retain set, curvature data that does not exist, …) and budgets that select no
    parameter. Raises ConfigError naming the field."""
    config_mod.check_feasible(cfg, prepared.forget_set)
    training.resolve_device(cfg["device"])  # a device absent here: refused before the store records
    if "device" in cfg["unlearning"]:
        try:
            training.resolve_device(cfg["unlearning"]["device"])
        except ConfigError as e:
            raise ConfigError("unlearning.device", e.message) from None
    if not cfg.get("fractions"):  # a run, or a sweep without `fractions`: each strategy its own
        for i, s in enumerate(cfg["strategies"]):
            if lacks_budget(s, s.get("fraction")):
                raise ConfigError(
                    f"strategies[{i}].fraction",
                    f"strategy {s['name']!r} needs a budget: fraction, quantile or threshold"
                    + (" (or the sweep's `fractions`)" if "seeds" in cfg else ""),
                )
    n_params = models.count_parameters(models.build(cfg["model"], prepared.dataset))
    fractions = [s.get("fraction") for s in cfg["strategies"] if is_budgeted(s)]
    fractions += cfg.get("fractions") or []
    for f in fractions:
        if f is not None and round(f * n_params) < 1:
            raise ConfigError(
                "fraction", f"{f} of {n_params} parameters selects none; use at least {1 / n_params:.2g}"
            )


# ---------------------------------------------------------------------------------------------
# models, curvature and liveness: computed once, cached in the store with their seconds


def model_key(cfg: dict, role: str) -> str:
    """What determines a trained model's weights (role: original or retrained)."""
    keys = ("dataset", "root", "train_size", "test_size", "model", "seed", "scenario", "train")
    return f"{role}-{config_key({k: cfg[k] for k in keys})}"


def train_model(
    cfg: dict,
    prepared: Prepared,
    role: str,
    *,
    store: RunStore | None = None,
    progress: Callable[[int, int, float, float], None] | None = None,
    device: torch.device | None = None,
) -> tuple[nn.Module, dict]:
    """Train (or load from the store) the `original` θ* on D_r ∪ D_f or the `retrained`
    reference on D_r ∪ D̃_f. Returns (model in eval mode, {"history", "seconds", "cached"});
    "seconds" is the measured training time, also when the model came from the store."""
    dev = device or training.resolve_device(cfg["device"])
    model = models.build(cfg["model"], prepared.dataset, seed=cfg["seed"])
    name = model_key(cfg, role)
    found = store.load_artifact(name, like=model.state_dict()) if store is not None else None
    if found is not None:
        model.load_state_dict(found[0])
        return model.to(dev).eval(), {**found[1], "cached": True}
    fs = prepared.forget_set
    x, y = (fs.x_train, fs.y_train) if role == "original" else fs.retrain_data()
    t = cfg["train"]
    hist = training.train(
        model,
        x,
        y,
        epochs=t["epochs"],
        lr=t["lr"],
        batch_size=t["batch_size"],
        seed=cfg["seed"],
        device=dev,
        progress=progress,
        optimizer=t["optimizer"],
        weight_decay=t["weight_decay"],
        schedule=t.get("schedule", "constant"),
    )
    meta = {"history": hist.epochs, "seconds": hist.seconds}
    if store is not None:
        store.save_artifact(name, model.state_dict(), meta)
    return model.eval(), {**meta, "cached": False}


def _like(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Shape-and-dtype templates (no memory: the meta device) of per-parameter tensors — diag H
    (float32) or a live mask (bool) — that a stored artifact must match."""
    return {n: torch.empty(p.shape, dtype=dtype, device="meta") for n, p in trainable(model)}


def curvature_key(cfg: dict) -> str:
    """Store name of the Hessian diagonal of a run's θ* under its "curvature" section."""
    return f"curv-{config_key({'model': model_key(cfg, 'original'), 'curvature': cfg['curvature']})}"


def curvature_scores(
    cfg: dict,
    prepared: Prepared,
    original: nn.Module,
    store: RunStore | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Scores, float, bool]:
    """diag H at θ* (config "curvature": estimator, data and, when given, `samples`: the mean
    over a subsample of that many samples drawn with the run's seed, and the estimator's own
    options such as `mc_samples`), from the store when cached.

    The one curvature path of the engine, the CLI and the dashboard. Returns (scores {name:
    float32 CPU tensor of the parameter's shape}, seconds it took to compute them, cached).
    `progress(done_samples, total_samples)` after every chunk (an exception raised there, e.g. a
    cancelled job, stops the computation and nothing is stored)."""
    from core.curvature import ESTIMATORS, hessian_diagonal

    name = curvature_key(cfg)
    found = store.load_artifact(name, like=_like(original, torch.float32)) if store is not None else None
    if found is not None:
        return found[0], found[1]["seconds"], True
    cv, fs = cfg["curvature"], prepared.forget_set
    sets = {
        "full": (fs.x_train, fs.y_train),
        "retain": fs.retain,
        "forget": fs.forget,
        "corrected": fs.corrected,
    }
    x, y = sets[cv["data"]]
    if len(y) == 0:
        raise ConfigError("curvature.data", f"{cv['data']!r} is empty for this scenario; use 'full'")
    options = {"probes": cv["probes"]} if cv["method"] == "hutchinson" else {}
    options.update({k: cv[k] for k in ESTIMATORS[cv["method"]].options if k in cv})  # e.g. mc_samples
    start = time.perf_counter()
    scores = hessian_diagonal(
        original,
        x,
        y,
        cv["method"],
        batch_size=None if cv["batch_size"] == "auto" else cv["batch_size"],
        seed=cfg["seed"],
        subsample=cv.get("samples"),
        progress=progress,
        **options,
    )
    seconds = time.perf_counter() - start
    if store is not None:
        store.save_artifact(name, scores, {"seconds": seconds})
    return scores, seconds, False


@dataclass
class Shared:
    """What every strategy of one run (or sweep seed) shares, with the measured seconds of each.

    scores: diag H at θ* or None when no strategy needs it; live: {name: BoolTensor}, True
    where the parameter is live — non-zero empirical Fisher Σ_i (∇θ ℓ(z_i))² over the training
    data D (a parameter with zero gradient on every training sample is dead)."""

    scores: Scores | None
    curvature_seconds: float | None
    curvature_cached: bool
    live: Masks
    liveness_seconds: float
    liveness_source: str  # "empirical_fisher"
    liveness_cached: bool


def liveness(
    cfg: dict,
    prepared: Prepared,
    original: nn.Module,
    scores: Scores | None = None,
    store: RunStore | None = None,
) -> tuple[Masks, float, str, bool]:
    """The live mask of θ*: (mask, seconds, source, cached); see `Shared`. Always its own
    empirical-Fisher pass over D (store-cached with its seconds), even when diag H is at hand:
    a strategy that needs only liveness (random) then pays for one cheap pass, not for the
    curvature. `scores` is accepted for callers that have them and is not used."""
    del scores
    fs, start = prepared.forget_set, time.perf_counter()
    name = f"live-{config_key({'model': model_key(cfg, 'original')})}"
    found = store.load_artifact(name, like=_like(original, torch.bool)) if store is not None else None
    if found is not None:
        return found[0], found[1]["seconds"], "empirical_fisher", True
    live = selection.live_mask(original, fs.x_train, fs.y_train)
    seconds = time.perf_counter() - start
    if store is not None:
        store.save_artifact(name, live, {"seconds": seconds})
    return live, seconds, "empirical_fisher", False


def needs_curvature(strategies: list[dict], methods: list[tuple[str, dict]]) -> bool:
    """Whether any strategy ranks by the curvature or any method reads diag H."""
    uses = any(m == "second_order" and hp.get("solver") == "diagonal" for m, hp in methods)
    return uses or any("curvature" in strategy_needs(s) for s in strategies)


def shared_inputs(
    cfg: dict, prepared: Prepared, original: nn.Module, *, curvature: bool, store: RunStore | None = None
) -> Shared:
    """The curvature (only when `curvature`) and the live mask of θ*, each computed once."""
    scores, curv_seconds, curv_cached = None, None, False
    if curvature:
        scores, curv_seconds, curv_cached = curvature_scores(cfg, prepared, original, store)
    live, live_seconds, source, live_cached = liveness(cfg, prepared, original, scores, store)
    return Shared(scores, curv_seconds, curv_cached, live, live_seconds, source, live_cached)


def strategy_needs(strategy: dict) -> frozenset[str]:
    """What a configured strategy's mask needs; `random` with live false needs no liveness."""
    needs = selection.STRATEGIES[strategy["name"]].needs
    return needs - {"liveness"} if strategy.get("live") is False else needs


def is_budgeted(strategy: dict) -> bool:
    return selection.STRATEGIES[strategy["name"]].budgeted


def lacks_budget(strategy: dict, fraction: float | None) -> bool:
    """A budgeted strategy with neither `fraction` (the one that applies: its own, or a sweep's)
    nor a quantile or threshold of its own: its mask cannot be built."""
    given = (fraction, strategy.get("quantile"), strategy.get("threshold"))
    return is_budgeted(strategy) and all(v is None for v in given)
