"""Small pure computations for the pages (no Streamlit): thresholds, rank correlation, overlaps."""

from __future__ import annotations

import numpy as np
import torch

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


def overlap_matrix(masks: dict[str, dict[str, torch.Tensor]]) -> np.ndarray:
    """Pairwise Jaccard |A∩B| / |A∪B| of named masks."""
    names = list(masks)
    vecs = {n: torch.cat([m.bool().flatten() for m in masks[n].values()]) for n in names}
    out = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = vecs[names[i]], vecs[names[j]]
            union = int((a | b).sum())
            out[i, j] = out[j, i] = 1.0 if union == 0 else int((a & b).sum()) / union
    return out
