"""The Where page's data: every model of a run rebuilt (θ* and the retrained model from the
store, each strategy's unlearned model recomputed from the run's config, cached per (run
config, strategy)), measured per layer with core.inspect, and shaped into chart series and
feature-space panels. No Streamlit calls: `where_job` runs in a background thread.

Projection: the PCA is fit on θ*'s test features and the strategy's model is projected on the
SAME axes (it is θ* after a masked update: its units are θ*'s, so a point that moves has moved).
The retrained model was trained separately, so its units are not θ*'s: it gets its own PCA
(fit on its test features), rotated or reflected onto θ*'s picture of the same test images
(orthogonal Procrustes, which keeps its distances).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core import experiment, inspect, selection
from core.artifacts import needs_curvature
from core.store import config_key
from ui import cache, choices
from ui.analysis.series import ORIGINAL, RETRAINED

Progress = Callable[[str, float, str], None]
TEST_SAMPLES = 500  # seeded test subsample for activations and the projection
FORGET_SAMPLES = 500  # at most this many forget samples in the projection


def run_key(cfg: dict) -> str:
    """Key of everything a run's models depend on except its strategy list."""
    return config_key({k: v for k, v in cfg.items() if k != "strategies"})[:16]


def strategy_key(cfg: dict, row: dict) -> str:
    """Key of one strategy's unlearned model: the run's config and the row's strategy, budget, method."""
    rest = {"strategy": row["strategy"], "fraction": row.get("fraction"), "method": row["method"]}
    return f"where-model:{run_key(cfg)}:{config_key(rest)[:16]}"


def reference_model(cfg: dict, role: str, st_: Any) -> torch.nn.Module:
    """θ* ("original") or the retrained model: from the store (trained and stored if missing),
    shared through ui.cache (do not mutate)."""
    found = cache.model(cfg, role, st_)
    if found is not None:
        return found[0]
    key = f"model:{st_.root}:{experiment.model_key(cfg, role)}"
    p = cache.prepared(cfg)
    return cache.shared(
        key, lambda: experiment.train_model(cfg, p, role, store=st_, device=torch.device("cpu"))
    )[0]


def unlearned(cfg: dict, row: dict, st_: Any, inputs: Any) -> tuple[torch.nn.Module, dict]:
    """(unlearned model, mask) of one result row, rebuilt by the engine's own
    core.experiment.apply_strategy and core.selection.mask_for with the run's seed; cached."""

    def compute() -> tuple[torch.nn.Module, dict]:
        original = cache.private_copy(reference_model(cfg, "original", st_))
        p = cache.prepared(cfg)
        method, hp = experiment.unlearning_hparams(cfg, row["method"])
        fraction = row.get("fraction")
        model, _ = experiment.apply_strategy(
            row["strategy"], fraction, method, hp, p, original, inputs, seed=cfg["seed"]
        )
        mask = selection.mask_for(
            row["strategy"],
            original,
            fraction=fraction if selection.STRATEGIES[row["strategy"]["name"]].budgeted else None,
            scores=inputs.scores,
            forget_set=p.forget_set,
            live=inputs.live,
            seed=cfg["seed"],
        )
        return model, mask

    return cache.shared(strategy_key(cfg, row), compute)


def samples(cfg: dict, n_test: int = TEST_SAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """(test subsample, forget samples as trained): `n_test` test images drawn with the run's
    seed, and at most FORGET_SAMPLES of D_f (its first ones)."""
    p = cache.prepared(cfg)
    x = p.dataset.x_test
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg["seed"]))[:n_test]
    return x[pick], p.forget_set.forget[0][:FORGET_SAMPLES]


def _measure(model: torch.nn.Module, x: torch.Tensor, x_f: torch.Tensor, ref_grams: dict) -> dict:
    grams = inspect.layer_grams(model, x)
    f_test, l_test = inspect.penultimate(model, x)
    f_forget, l_forget = inspect.penultimate(model, x_f)
    return {
        "cka": inspect.cka_to_reference(grams, ref_grams),
        "test": f_test,
        "forget": f_forget,
        "pred_test": l_test.argmax(1),
        "pred_forget": l_forget.argmax(1),
    }


def inspect_run(
    cfg: dict, rows: list[dict], st_: Any, progress: Progress, n_test: int = TEST_SAMPLES
) -> dict:
    """Every model of a run measured per layer (share selected, relative change vs θ*, CKA to
    the retrained model) with its penultimate features; see the module docstring."""
    progress("models", 0.0, "θ* and the retrained model…")
    original = reference_model(cfg, "original", st_)
    retrained = reference_model(cfg, "retrained", st_)
    p = cache.prepared(cfg)
    methods = [experiment.unlearning_hparams(cfg, r["method"]) for r in rows]
    need = needs_curvature([r["strategy"] for r in rows], methods)
    inputs = experiment.shared_inputs(cfg, p, cache.private_copy(original), curvature=need, store=st_)
    x, x_f = samples(cfg, n_test)
    ref_grams = inspect.layer_grams(retrained, x)
    layers = list(ref_grams)
    models = []
    for role, model in ((ORIGINAL, original), (RETRAINED, retrained)):
        change = inspect.relative_change(model, original)
        models.append(
            {
                **role,
                "share": None,
                "change": [change[n] for n in layers],
                **_measure(model, x, x_f, ref_grams),
            }
        )
    for i, row in enumerate(rows):
        progress(
            "unlearn", (i + 1) / (len(rows) + 1), f"{row['label']}: unlearned model ({i + 1}/{len(rows)})…"
        )
        model, mask = unlearned(cfg, row, st_, inputs)
        share, change = inspect.layer_share(mask, model), inspect.relative_change(model, original)
        models.append(
            {
                "label": row["label"],
                "key": choices.strategy_key(row),
                "share": [share[n] for n in layers],
                "change": [change[n] for n in layers],
                **_measure(model, x, x_f, ref_grams),
            }
        )
    for m in models:
        m["cka"] = [m["cka"][n] for n in layers]
    sizes = {
        n: sum(q.numel() for q in m.parameters(recurse=False)) for n, m in inspect.layers(original).items()
    }
    return {
        "run": run_key(cfg),
        "layers": layers,
        "sizes": [sizes[n] for n in layers],
        "n_test": len(x),
        "n_forget": len(x_f),
        "models": models,
    }


def where_key(cfg: dict, rows: list[dict]) -> str:
    """Key of one inspection: the run's config and its strategies (the `key` of `where_job`'s result)."""
    return f"where:{run_key(cfg)}:{config_key([strategy_key(cfg, r) for r in rows])[:16]}"


def where_job(cfg: dict, rows: list[dict], store_path: str) -> Callable[[Progress], dict]:
    """`fn(progress)` returning `inspect_run` (with its "key") for a run, computed once per key."""
    key = where_key(cfg, rows)
    return lambda progress: cache.shared(
        key, lambda: {"key": key, **inspect_run(cfg, rows, cache.store_for(store_path), progress)}
    )


# -- shaping (pure) ---------------------------------------------------------------------------
def where_layers(inspection: dict) -> list[dict]:
    """Series for figures.layer_profile: {"label", "key", "share", "change", "cka"} per model."""
    return [{k: m[k] for k in ("label", "key", "share", "change", "cka")} for m in inspection["models"]]


def where_strategies(inspection: dict) -> list[str]:
    return [m["label"] for m in inspection["models"] if m["key"] not in ("original", "retrained")]


def where_projection(inspection: dict, label: str) -> list[dict]:
    """Three panels {"title", "test": n×2, "forget": m×2, "pred_test", "pred_forget"}: θ*, the
    strategy `label` (on θ*'s PCA axes) and the retrained model (own PCA, Procrustes-aligned)."""
    by = {m["label"]: m for m in inspection["models"]}
    o, u, r = by[ORIGINAL["label"]], by[label], by[RETRAINED["label"]]
    (o_test, o_forget, u_test, u_forget), ratio = inspect.pca_2d(
        o["test"], o["forget"], u["test"], u["forget"]
    )
    (r_test, r_forget), r_ratio = inspect.pca_2d(r["test"], r["forget"])
    rot = inspect.procrustes_2d(r_test, o_test)
    var = f"{sum(ratio):.0%} of θ*'s variance"
    return [
        _panel(f"{o['label']} ({var})", o_test, o_forget, o),
        _panel(f"{label} (θ*'s axes)", u_test, u_forget, u),
        _panel(f"{r['label']} (own PCA, {sum(r_ratio):.0%})", r_test @ rot, r_forget @ rot, r),
    ]


def _panel(title: str, test: np.ndarray, forget: np.ndarray, m: dict) -> dict:
    return {
        "title": title,
        "test": test,
        "forget": forget,
        "pred_test": m["pred_test"],
        "pred_forget": m["pred_forget"],
    }


def where_summary(inspection: dict) -> list[str]:
    """Sentences answering "does each strategy pick the layers where θ* and the retrained model
    differ?": the layer of lowest CKA(θ*, retrained); per strategy the layer holding most of its
    selected parameters, the layer with its largest share, and the Spearman correlation across
    layers of its shares with 1 − CKA(θ*, retrained)."""
    from scipy.stats import spearmanr

    layers, by = inspection["layers"], {m["key"]: m for m in inspection["models"]}
    cka = np.array(by["original"]["cka"], dtype=float)
    low = int(np.nanargmin(cka))
    out = [f"θ* differs most from the retrained model in **{layers[low]}** (CKA {cka[low]:.3f})."]
    sizes = np.array(inspection["sizes"], dtype=float)
    for m in inspection["models"]:
        if m["share"] is None:
            continue
        share = np.array(m["share"])
        counts = share * sizes
        top, most = int(np.argmax(share)), int(np.argmax(counts))
        rho = spearmanr(share, 1 - cka).statistic if len(layers) > 2 and np.ptp(share) > 0 else float("nan")
        rho_text = f"; rank correlation of its shares with 1 − CKA: {rho:+.2f}" if np.isfinite(rho) else ""
        where = (
            f"the largest share of a layer in **{layers[top]}** ({share[top]:.1%})"
            if np.ptp(share) > 0
            else f"the same share of every layer ({share[0]:.1%})"
        )
        out.append(
            f"{m['label']}: {counts[most] / counts.sum():.0%} of its {counts.sum():,.0f} parameters in "
            f"**{layers[most]}**, {where}{rho_text}."
        )
    return out
