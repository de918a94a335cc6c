"""The Curvature page's data: scores as one vector, the selection threshold and count, every
strategy's mask at a budget, and the rank agreement of the estimators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core import experiment, selection
from ui import choices, figures

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


@dataclass(frozen=True)
class Ranking:
    """diag H of one model ranked ONCE for the budget slider: a budget change then only reads
    counts and compares positions (no sort, no mask building).

    The order is core.selection's for SAPS: |H_ii| ascending, ties by parameter index (a stable
    sort); `largest` takes it from the end, otherwise from the start among the non-zero scores.
    Fields: names / shapes / bounds (tensor i is flat[bounds[i]:bounds[i+1]]); flat: |H_ii| (P,);
    position: each parameter's place in the selection order (P for an ineligible zero);
    ordered: |H_ii| in selection order (eligible ones); counts / zero_counts: per tensor, the
    selected parameters (and those with H_ii = 0) at every FRACTIONS budget, computed once;
    hist: (counts, edges, zeros) of log10 |H_ii| over the non-zero scores; zrange: the
    heatmaps' colour range (figures.log_scores of every score)."""

    largest: bool
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    bounds: np.ndarray
    flat: np.ndarray
    position: np.ndarray
    ordered: np.ndarray
    zeros: np.ndarray
    counts: dict[float, np.ndarray]
    zero_counts: dict[float, np.ndarray]
    hist: tuple[np.ndarray, np.ndarray, int]
    zrange: tuple[float, float]

    @property
    def total(self) -> int:
        return len(self.flat)

    def k(self, fraction: float) -> int:
        """The number selected at `fraction`: round(fraction × P), at most the eligible ones."""
        return min(round(fraction * self.total), len(self.ordered))


def ranking(scores: Scores, largest: bool, fractions: Sequence[float] = (), bins: int = 60) -> Ranking:
    """Rank `scores` once (see Ranking) and count the per-tensor selection at every budget in
    `fractions` (the slider's options)."""
    names = tuple(scores)
    flat_t = torch.cat([scores[n].detach().reshape(-1).double().abs().cpu() for n in names])
    candidates = torch.arange(len(flat_t)) if largest else (flat_t != 0).nonzero().squeeze(1)
    order = candidates[torch.sort(flat_t[candidates], stable=True).indices]
    order = order.flip(0) if largest else order
    flat, order_np = flat_t.numpy(), order.numpy()
    position = np.full(len(flat), len(flat), dtype=np.int64)
    position[order_np] = np.arange(len(order_np))
    sizes = [scores[n].numel() for n in names]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    layer = np.repeat(np.arange(len(names)), sizes)
    zeros = flat == 0
    counts, zero_counts = {}, {}
    logs = figures.log_scores(flat)  # the heatmaps' shared colour range
    rank = Ranking(
        largest,
        names,
        tuple(tuple(scores[n].shape) for n in names),
        bounds,
        flat,
        position,
        flat[order_np],
        zeros,
        counts,
        zero_counts,
        figures.log_histogram(flat, bins),
        (float(logs.min()), float(logs.max())),
    )
    for f in fractions:
        chosen = order_np[: rank.k(f)]
        counts[f] = np.bincount(layer[chosen], minlength=len(names))
        zero_counts[f] = np.bincount(layer[chosen[zeros[chosen]]], minlength=len(names))
    return rank


def selection_at(rank: Ranking, fraction: float) -> dict:
    """The SAPS selection at budget `fraction` from a Ranking, in saps_selection's shape: {"mask":
    {name: bool ndarray}, "n", "threshold", "rows" (core.selection.summary rows), "total",
    "dead", "caption"}. Reads the counts computed once (computes them for another budget)."""
    k = rank.k(fraction)
    counts, zero_counts = rank.counts.get(fraction), rank.zero_counts.get(fraction)
    if counts is None:  # a budget off the slider: one pass over the positions
        counts, zero_counts = ranking_counts(rank, k)
    t = float(rank.ordered[k - 1]) if k > 0 else None
    rows, mask = [], {}
    for i, name in enumerate(rank.names):
        lo, hi = rank.bounds[i], rank.bounds[i + 1]
        mask[name] = (rank.position[lo:hi] < k).reshape(rank.shapes[i])
        numel = int(hi - lo)
        row = {
            "name": name,
            "numel": numel,
            "selected": int(counts[i]),
            "share": int(counts[i]) / max(1, numel),
        }
        row["zero_score"] = int(rank.zeros[lo:hi].sum())
        row["zero_score_selected"] = int(zero_counts[i])
        rows.append(row)
    dead = int(rank.zeros.sum())
    caption = (
        f"threshold |H_ii| {'≥' if rank.largest else '≤'} {t:.3e} · {dead:,} of {rank.total:,} parameters "
        "have H_ii = 0 exactly (dead units)."
        if t is not None
        else "nothing selected"
    )
    return {
        "mask": mask,
        "n": k,
        "threshold": t,
        "rows": rows,
        "total": rank.total,
        "dead": dead,
        "caption": caption,
    }


def ranking_counts(rank: Ranking, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-tensor selected and zero-score selected counts of the first `k` in the order."""
    layer = np.searchsorted(rank.bounds, np.arange(rank.total), side="right") - 1
    chosen = rank.position < k
    n = len(rank.names)
    return np.bincount(layer[chosen], minlength=n), np.bincount(layer[chosen & rank.zeros], minlength=n)


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
