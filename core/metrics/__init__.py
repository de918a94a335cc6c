"""What a user measures after unlearning: the METRICS dict of DESIGN.md.

    test_acc             accuracy on the clean test set
    retain_acc           accuracy on D_r (labels as trained, which are correct there)
    forget_acc           accuracy on D_f inputs w.r.t. the corrected (true) labels
    forget_acc_poisoned  accuracy on D_f inputs w.r.t. the poisoned labels it was trained on
    asr                  backdoor attack success: triggered non-target test images -> target
    mia_auc              membership inference AUC on D_f vs unseen test data (loss threshold)
    relearn_asr          attack success after a few fine-tuning steps on poisoned + clean samples
    dist_to_retrained    relative L2 distance of the weights to the retrained model

Extra keys (always present, None when not computed): mia_auc_logistic, mia_tpr_at_1pct_fpr,
mia_tpr_at_0p1pct_fpr (loss attack), agreement and kl_to_retrained (test set, vs the reference).
Comparisons between models (`backdoor_removal`, `restored_pct`) are computed by the experiment,
which holds the original and retrained metrics.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.training import accuracy, predict

METRIC_KEYS = ("test_acc", "retain_acc", "forget_acc", "forget_acc_poisoned", "asr", "mia_auc",
               "relearn_asr", "dist_to_retrained")  # fmt: skip
EXTRA_KEYS = ("mia_auc_logistic", "mia_tpr_at_1pct_fpr", "mia_tpr_at_0p1pct_fpr", "agreement",
              "kl_to_retrained")  # fmt: skip


def attack_success_rate(model: nn.Module, forget_set) -> float | None:
    """Share of triggered non-target test images classified as the target (backdoor only)."""
    if "triggered_test" not in forget_set.eval_sets:
        return None
    return accuracy(model, *forget_set.eval_sets["triggered_test"])


def relative_distance(model: nn.Module, reference: nn.Module) -> float:
    """‖θ − θ_ref‖₂ / ‖θ_ref‖₂ over all parameters."""
    num = sum(((p.detach().cpu() - q.detach().cpu()) ** 2).sum() for p, q in
              zip(model.parameters(), reference.parameters()))  # fmt: skip
    den = sum((q.detach().cpu() ** 2).sum() for q in reference.parameters())
    return float((num / den).sqrt())


def output_distance(model: nn.Module, reference: nn.Module, inputs: torch.Tensor) -> tuple[float, float]:
    """(prediction agreement, mean KL(p_ref ‖ p_model)) on `inputs` (N×C×H×W)."""
    return _output_distance(predict(model, inputs), predict(reference, inputs))


def _output_distance(logits: torch.Tensor, ref_logits: torch.Tensor) -> tuple[float, float]:
    lp = F.log_softmax(logits, 1)
    lq = F.log_softmax(ref_logits, 1)
    agreement = float((lp.argmax(1) == lq.argmax(1)).float().mean())
    kl = float((lq.exp() * (lq - lp)).sum(1).mean())
    return agreement, kl


# -- membership inference ------------------------------------------------------------------------


def per_sample_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Cross-entropy of every sample, shape N (numpy)."""
    return F.cross_entropy(predict(model, inputs), targets.cpu(), reduction="none").numpy()


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """True-positive rate at false-positive rate ≤ `fpr` (the ROC step function, no interpolation)."""
    from sklearn.metrics import roc_curve

    fprs, tprs, _ = roc_curve(labels, scores)
    ok = fprs <= fpr + 1e-12
    return float(tprs[ok].max()) if ok.any() else 0.0


def confidence_features(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Per sample: loss, p(label), top-3 sorted probabilities, entropy (an attacker's features)."""
    lp = F.log_softmax(logits, 1)
    p = lp.exp()
    top = p.sort(1, descending=True).values[:, :3]
    loss = -lp.gather(1, targets[:, None])
    entropy = -(p * lp).sum(1, keepdim=True)
    return torch.cat([loss, loss.neg().exp(), top, entropy], 1).numpy()


def membership_inference(model: nn.Module | None, members: tuple[torch.Tensor, torch.Tensor],
                         non_members: tuple[torch.Tensor, torch.Tensor], *, seed: int = 0,
                         logits: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:  # fmt: skip
    """Attacks on members (label 1) vs non-members (label 0), balanced by subsampling the larger set.

    loss threshold: score = −loss (members fit better) -> AUC, TPR at 1 % and 0.1 % FPR.
    logistic: L2-regularized logistic regression (C = 1, as sklearn's default) on standardized
    `confidence_features`, AUC of 5-fold stratified cross-validated scores.
    logits: the model's logits on (members inputs, non-members inputs) when already computed
    (then `model` is not called).
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    (x_in, y_in), (x_out, y_out) = members, non_members
    n = min(len(y_in), len(y_out))
    if n < 2:
        return {"mia_auc": None, "mia_auc_logistic": None, "mia_tpr_at_1pct_fpr": None,
                "mia_tpr_at_0p1pct_fpr": None}  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    i_in = torch.randperm(len(y_in), generator=g)[:n]
    i_out = torch.randperm(len(y_out), generator=g)[:n]
    y = torch.cat([y_in[i_in], y_out[i_out]]).cpu()
    if logits is None:
        out_logits = predict(model, torch.cat([x_in[i_in], x_out[i_out]]))
    else:
        out_logits = torch.cat([logits[0][i_in], logits[1][i_out]])
    labels = np.r_[np.ones(n), np.zeros(n)]
    feats = confidence_features(out_logits, y)
    score = -feats[:, 0]
    out = {"mia_auc": float(roc_auc_score(labels, score)),
           "mia_tpr_at_1pct_fpr": tpr_at_fpr(labels, score, 0.01),
           "mia_tpr_at_0p1pct_fpr": tpr_at_fpr(labels, score, 0.001)}  # fmt: skip
    feats = np.nan_to_num(feats, nan=0.0, posinf=50.0, neginf=-50.0)
    proba = np.zeros(2 * n)
    for train, test in StratifiedKFold(min(5, n), shuffle=True, random_state=seed).split(feats, labels):
        mu, sd = feats[train].mean(0), feats[train].std(0)
        sd[sd == 0] = 1.0  # as StandardScaler: a constant feature is left unscaled
        w = logistic_fit((feats[train] - mu) / sd, labels[train])
        proba[test] = _sigmoid(_design((feats[test] - mu) / sd) @ w)
    out["mia_auc_logistic"] = float(roc_auc_score(labels, proba))
    return out


def _design(x: np.ndarray) -> np.ndarray:
    return np.c_[x, np.ones(len(x))]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logistic_fit(x: np.ndarray, y: np.ndarray, *, c: float = 1.0, iters: int = 50) -> np.ndarray:
    """Weights (features…, intercept) minimizing ½‖w‖² + C·Σ logloss (intercept unpenalized), the
    objective of sklearn's LogisticRegression(C), by Newton's method: features are few (6), so
    a dense solve per iteration costs microseconds instead of a solver's per-call overhead."""
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


# -- relearning attack ---------------------------------------------------------------------------


def relearn_attack(model: nn.Module, forget_set, *, samples: int = 10, clean: int = 90, steps: int = 20,
                   lr: float = 1e-3, seed: int = 0) -> float | None:  # fmt: skip
    """Attack success after `steps` Adam steps (lr) on a copy, fine-tuned on `samples` poisoned
    D_f samples mixed with `clean` retain samples.

    Backdoor only (None otherwise): how fast does the backdoor come back? The clean samples
    matter: fine-tuned on poisoned samples alone, any model (the retrained one too) learns to
    answer the target class for everything, and the attack says nothing about the trigger."""
    if "triggered_test" not in forget_set.eval_sets:
        return None
    x_f, y_f = forget_set.forget
    x_r, y_r = forget_set.retain
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(y_f), generator=g)[: min(samples, len(y_f))]
    keep = torch.randperm(len(y_r), generator=g)[: min(clean, len(y_r))]
    attacked = copy.deepcopy(model)
    dev = next(attacked.parameters()).device
    x = torch.cat([x_f[idx], x_r[keep]]).to(dev)
    y = torch.cat([y_f[idx], y_r[keep]]).to(dev)
    opt = torch.optim.Adam(attacked.parameters(), lr=lr)
    attacked.eval()  # BatchNorm statistics stay as they are: the attacker fine-tunes weights
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(attacked(x), y).backward()
            opt.step()
    return attack_success_rate(attacked, forget_set)


# -- comparisons between models -------------------------------------------------------------------


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or not math.isfinite(num) or abs(den) < 1e-12:
        return None
    return num / den


def backdoor_removal(asr_original: float | None, asr_unlearned: float | None,
                     asr_retrained: float | None) -> float | None:  # fmt: skip
    """(asr_original − asr_unlearned) / (asr_original − asr_retrained): 1 = as good as retraining."""
    if None in (asr_original, asr_unlearned, asr_retrained):
        return None
    return _ratio(asr_original - asr_unlearned, asr_original - asr_retrained)


def restored_pct(acc_before: float | None, acc_after: float | None, acc_clean: float | None) -> float | None:
    """Warnecke's % restored: 100·(acc_after − acc_before)/(acc_clean − acc_before)."""
    if None in (acc_before, acc_after, acc_clean):
        return None
    r = _ratio(acc_after - acc_before, acc_clean - acc_before)
    return None if r is None else 100.0 * r


# -- the METRICS dict ------------------------------------------------------------------------------


def evaluate(model: nn.Module, dataset, forget_set, *, reference: nn.Module | None = None,
             mia: bool = True, relearn: bool = True, seed: int = 0, **options: Any) -> dict[str, float | None]:  # fmt: skip
    """METRICS of `model` on `dataset` and `forget_set` (see the module docstring).

    mia: run the membership-inference attacks (D_f as trained vs the test set);
    relearn: run the relearning attack (options relearn_samples, relearn_clean, relearn_steps,
    relearn_lr).
    reference_test_logits (option): the reference's test logits, computed once by the caller
    when it evaluates many models against one reference.
    """
    x_f, y_f_poisoned = forget_set.forget
    _, y_f_true = forget_set.forget_true
    x_r, y_r = forget_set.retain
    # one forward pass per data set, shared by every metric that reads it
    test_logits = predict(model, dataset.x_test)
    forget_logits = predict(model, x_f) if len(y_f_true) else None
    forget_pred = forget_logits.argmax(1) if forget_logits is not None else None

    def acc(pred: torch.Tensor | None, y: torch.Tensor) -> float | None:
        return None if pred is None or len(y) == 0 else float((pred == y.cpu()).float().mean())

    out: dict[str, float | None] = {
        "test_acc": acc(test_logits.argmax(1), dataset.y_test),
        "retain_acc": accuracy(model, x_r, y_r),
        "forget_acc": acc(forget_pred, y_f_true),
        "forget_acc_poisoned": acc(forget_pred, y_f_poisoned),
        "asr": attack_success_rate(model, forget_set),
        "mia_auc": None,
        "relearn_asr": None,
        "dist_to_retrained": relative_distance(model, reference) if reference is not None else None,
    }
    out.update({k: None for k in EXTRA_KEYS})
    if mia:
        logits = (forget_logits, test_logits) if forget_logits is not None else None
        out.update(membership_inference(model, (x_f, y_f_poisoned), (dataset.x_test, dataset.y_test), seed=seed,
                                        logits=logits))  # fmt: skip
    if relearn:
        out["relearn_asr"] = relearn_attack(
            model, forget_set, samples=options.get("relearn_samples", 10),
            clean=options.get("relearn_clean", 90), steps=options.get("relearn_steps", 20),
            lr=options.get("relearn_lr", 1e-3), seed=seed,
        )  # fmt: skip
    if reference is not None:
        ref_logits = options.get("reference_test_logits")
        if ref_logits is None:
            ref_logits = predict(reference, dataset.x_test)
        out["agreement"], out["kl_to_retrained"] = _output_distance(test_logits, ref_logits)
    return out
