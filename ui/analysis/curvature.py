"""The Curvature page's data: scores as one vector, the selection threshold and count, every
strategy's mask at a budget, and the rank agreement of the estimators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from core import experiment, selection
from ui import choices

Scores = dict[str, torch.Tensor]


def flat(scores: Scores) -> np.ndarray:
    """All scores as one float64 vector (abs), in parameter order."""
    return np.concatenate([v.detach().abs().double().flatten().cpu().numpy() for v in scores.values()])


def threshold(scores: Scores, mask: dict[str, torch.Tensor], largest: bool) -> float | None:
    """The score at the selection boundary: the smallest chosen |H_ii| (largest=True) or the largest."""
    chosen = [scores[n].detach().abs()[m.bool()] for n, m in mask.items() if m.any()]
    if not chosen:
        return None
    v = torch.cat([c.flatten() for c in chosen])
    return float(v.min() if largest else v.max())


def n_selected(mask: dict[str, torch.Tensor]) -> int:
    return int(sum(int(m.sum()) for m in mask.values()))


def saps_selection(original: torch.nn.Module, scores: Scores, fraction: float, largest: bool) -> dict:
    """The SAPS mask at budget `fraction` (largest or smallest |H_ii|) and what the page shows of
    it: {"mask", "n": selected count, "threshold", "rows": core.selection.summary rows, "total":
    parameters, "dead": parameters with H_ii = 0 exactly, "caption": the threshold line}."""
    mask = selection.mask_for(
        {"name": "saps", "largest": largest}, original, fraction=fraction, scores=scores
    )
    n, t = n_selected(mask), threshold(scores, mask, largest)
    rows = selection.summary(mask, scores)
    total = sum(r["numel"] for r in rows)
    dead = sum(r["zero_score"] or 0 for r in rows)
    caption = (
        f"threshold |H_ii| {'≥' if largest else '≤'} {t:.3e} · {dead:,} of {total:,} parameters have "
        "H_ii = 0 exactly (dead units)."
        if t is not None
        else "nothing selected"
    )
    return {
        "mask": mask,
        "n": n,
        "threshold": t,
        "rows": rows,
        "total": total,
        "dead": dead,
        "caption": caption,
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (scipy's, with ties averaged); nan when a side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def rank_matrix(vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Pairwise Spearman correlations of named score vectors (same length)."""
    names = list(vectors)
    out = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = spearman(vectors[names[i]], vectors[names[j]])
    return out


def strategy_masks(
    cfg: dict, prepared: Any, original: torch.nn.Module, scores: Scores, fraction: float, store: Any = None
) -> dict[str, dict[str, torch.Tensor]]:
    """Every strategy choice's mask at budget `fraction` (label -> mask), built by
    core.selection.mask_for with the run's live mask (computed once, store-cached)."""
    live = experiment.liveness(cfg, prepared, original, scores, store)[0]
    out = {}
    for entry in choices.strategies().values():
        out[selection.strategy_label(entry)] = selection.mask_for(
            entry,
            original,
            fraction=fraction if selection.STRATEGIES[entry["name"]].budgeted else None,
            scores=scores,
            forget_set=prepared.forget_set,
            seed=cfg["seed"],
            live=live,
        )
    return out


def estimator_agreement(
    cfg: dict, scores_of: Callable[[dict], Scores], progress: Callable[[str, float, str], None]
) -> dict:
    """diag H by every estimator of core.curvature.ESTIMATORS (`scores_of(cfg)` computes or loads
    one) and their pairwise Spearman rank correlations: {"names": [label, ...], "matrix": [[...]]}."""
    from core.curvature import ESTIMATORS

    vectors = {}
    for i, (name, est) in enumerate(ESTIMATORS.items()):
        progress("estimators", i / len(ESTIMATORS), f"{est.label}…")
        vectors[est.label] = flat(scores_of({**cfg, "curvature": {**cfg["curvature"], "method": name}}))
    return {"names": list(vectors), "matrix": rank_matrix(vectors).tolist()}
