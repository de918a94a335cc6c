"""Membership inference on logits: who was trained on, and how well poisoned labels are still fit.

The attack score is the logit-scaled confidence of LiRA (Carlini et al. 2022), also the statistic
of the NeurIPS 2023 unlearning challenge:

    φ(x, y) = log p_y − log(1 − p_y) = z_y − log Σ_{j≠y} exp z_j        (z: the logits)

computed from the right-hand side, so it never takes log 0. Members (trained on) score higher.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TPR_FPRS = {"mia_tpr_at_1pct_fpr": (0.01, 100), "mia_tpr_at_0p1pct_fpr": (0.001, 1000)}
"""key -> (false-positive rate, samples per side needed to resolve it: 1 / FPR)."""

MIA_KEYS = ("mia_auc", "mia_auc_logistic", *TPR_FPRS, "mia_n")


def logit_scaled_confidence(
    logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray
) -> np.ndarray:
    """φ = log p_y − log(1 − p_y) per sample (float64 numpy, shape N) from logits N×C, targets N.

    Computed as z_y − logsumexp_{j≠y} z_j: exact in float64, finite for any finite logits
    (the challenge's code adds 1e-45 inside both logs instead, which caps |φ| near 103)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(targets, dtype=torch.long).reshape(-1, 1)
    z_y = z.gather(1, y).squeeze(1)
    others = z.scatter(1, y, float("-inf"))
    return (z_y - torch.logsumexp(others, 1)).numpy()


def confidence_features(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Attacker features per sample, N×7: φ, loss, p_y, top-3 sorted probabilities, entropy."""
    lp = F.log_softmax(logits.double(), 1)
    p = lp.exp()
    top = p.sort(1, descending=True).values[:, :3]
    loss = -lp.gather(1, targets.reshape(-1, 1))
    entropy = -(p * lp).sum(1, keepdim=True)
    phi = torch.from_numpy(logit_scaled_confidence(logits, targets))[:, None]
    return torch.cat([phi, loss, loss.neg().exp(), top, entropy], 1).numpy()


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """True-positive rate at false-positive rate ≤ `fpr` (the ROC step function, no interpolation)."""
    from sklearn.metrics import roc_curve

    fprs, tprs, _ = roc_curve(labels, scores)
    ok = fprs <= fpr + 1e-12
    return float(tprs[ok].max()) if ok.any() else 0.0


def balanced_indices(n_in: int, n_out: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded subsamples of min(n_in, n_out) indices from each side (members drawn first)."""
    n = min(n_in, n_out)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_in, generator=g)[:n], torch.randperm(n_out, generator=g)[:n]


def membership_inference(
    member_logits: torch.Tensor,
    member_targets: torch.Tensor,
    nonmember_logits: torch.Tensor,
    nonmember_targets: torch.Tensor,
    *,
    seed: int = 0,
) -> dict:
    """Attacks on members (label 1) vs non-members (label 0), balanced by seeded subsampling.

    Threshold attack: score φ (see `logit_scaled_confidence`) -> `mia_auc` (ROC AUC), and the TPR at
    1 % / 0.1 % FPR only when each side has ≥ 100 / ≥ 1,000 samples (with fewer, one false
    positive already exceeds that FPR). Logistic attack (`mia_auc_logistic`, as SalUn and SSD
    evaluate): L2-regularized logistic regression, C = 1, on standardized `confidence_features`,
    AUC of the out-of-fold scores of a stratified 5-fold cross-validation.

    Logits: members M×C, non-members N×C (any order). Returns the MIA_KEYS and "notes"
    {key: why it is None}; `mia_n` = samples per side used."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    i_in, i_out = balanced_indices(len(member_targets), len(nonmember_targets), seed)
    n = len(i_in)
    out: dict = dict.fromkeys(MIA_KEYS)
    out["mia_n"], out["notes"] = n, {}
    if n < 2:
        reason = f"needs ≥ 2 samples per side, have {n}"
        out["notes"] = {k: reason for k in MIA_KEYS if k != "mia_n"}
        return out
    logits = torch.cat([member_logits[i_in], nonmember_logits[i_out]]).cpu()
    targets = torch.cat([member_targets[i_in], nonmember_targets[i_out]]).cpu()
    labels = np.r_[np.ones(n), np.zeros(n)]
    feats = confidence_features(logits, targets)
    out["mia_auc"] = float(roc_auc_score(labels, feats[:, 0]))
    for key, (fpr, needed) in TPR_FPRS.items():
        if n >= needed:
            out[key] = tpr_at_fpr(labels, feats[:, 0], fpr)
        else:
            out["notes"][key] = f"needs ≥ {needed} samples per side, have {n}"
    proba = np.zeros(2 * n)
    for train, test in StratifiedKFold(min(5, n), shuffle=True, random_state=seed).split(feats, labels):
        mu, sd = feats[train].mean(0), feats[train].std(0)
        sd[sd == 0] = 1.0  # as StandardScaler: a constant feature is left unscaled
        w = logistic_fit((feats[train] - mu) / sd, labels[train])
        proba[test] = _sigmoid(_design((feats[test] - mu) / sd) @ w)
    out["mia_auc_logistic"] = float(roc_auc_score(labels, proba))
    return out


def poison_fit_auc(
    forget_logits: torch.Tensor,
    poisoned_targets: torch.Tensor,
    test_logits: torch.Tensor,
    test_targets: torch.Tensor,
    *,
    seed: int = 0,
) -> float | None:
    """Loss-threshold AUC of D_f AS TRAINED (trigger, poisoned label) vs test images.

    Not membership: it measures how well the poisoned labels are still fit (θ* ≈ 1, a model
    that never saw them ≈ 0). −loss = log p_y ranks samples as φ does, so the AUC is taken on
    −loss. Same balanced seeded subsampling as `membership_inference`; None with < 2 per side."""
    from sklearn.metrics import roc_auc_score

    i_in, i_out = balanced_indices(len(poisoned_targets), len(test_targets), seed)
    n = len(i_in)
    if n < 2:
        return None
    logits = torch.cat([forget_logits[i_in], test_logits[i_out]]).cpu()
    targets = torch.cat([poisoned_targets[i_in], test_targets[i_out]]).cpu()
    loss = F.cross_entropy(logits.double(), targets, reduction="none").numpy()
    return float(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], -loss))


def _design(x: np.ndarray) -> np.ndarray:
    return np.c_[x, np.ones(len(x))]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logistic_fit(x: np.ndarray, y: np.ndarray, *, c: float = 1.0, iters: int = 50) -> np.ndarray:
    """Weights (features…, intercept) minimizing ½‖w‖² + C·Σ logloss (intercept unpenalized): the
    objective of sklearn's LogisticRegression(C), which the tests check it against.

    Newton's method rather than sklearn: with 7 features a dense solve per iteration converges
    to 1e-10 in a few iterations, deterministically and without lbfgs' iteration-limit
    warnings on nearly separable folds, and costs microseconds where an estimator call per fold
    costs milliseconds (evaluate runs 5 folds for every model of a sweep)."""
    a = _design(x)
    w = np.zeros(a.shape[1])
    reg = np.ones(a.shape[1]) / c
    reg[-1] = 0.0
    for _ in range(iters):
        p = _sigmoid(a @ w)
        grad = a.T @ (p - y) + reg * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg) + 1e-10 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w
