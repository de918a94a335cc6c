"""Metrics against sklearn and hand-computed values on small cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from core import metrics
from core.scenarios import ForgetSet
from tests.test_unlearning import linear, tiny_forget_set


def phi(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """log p_y − log(1 − p_y) from the probabilities (fine for moderate logits)."""
    p = torch.softmax(logits.double(), 1)[torch.arange(len(y)), y].numpy()
    return np.log(p) - np.log1p(-p)


def test_tpr_at_fpr_hand_case():
    labels = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.4, 0.5, 0.1, 0.8, 0.3])
    assert metrics.tpr_at_fpr(labels, scores, 0.0) == pytest.approx(2 / 3)  # 0.9, 0.8 above every negative
    assert metrics.tpr_at_fpr(labels, scores, 0.34) == pytest.approx(1.0)


def test_threshold_attack_auc_and_tpr_against_independent_computations():
    torch.manual_seed(0)
    n = 120  # ≥ 100 per side: TPR at 1 % FPR is reported, at 0.1 % it is not
    logits_in, logits_out = torch.randn(n, 3) * 3 + torch.tensor([1.0, 0, 0]), torch.randn(n, 3) * 3
    y_in, y_out = torch.zeros(n, dtype=torch.long), torch.randint(3, (n,))
    out = metrics.membership_inference(logits_in, y_in, logits_out, y_out, seed=4)
    s_in, s_out = phi(logits_in, y_in), phi(logits_out, y_out)
    # each side has exactly n samples: the seeded subsample is a permutation, AUC is order-free
    assert out["mia_auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(n), np.zeros(n)], np.r_[s_in, s_out]))
    # FPR ≤ 1 % of 120 allows one false positive: members above the second-highest non-member
    assert out["mia_tpr_at_1pct_fpr"] == pytest.approx(np.mean(s_in > np.sort(s_out)[-2]))
    assert out["mia_tpr_at_0p1pct_fpr"] is None and "1000" in out["notes"]["mia_tpr_at_0p1pct_fpr"]
    assert out["mia_n"] == n and 0 <= out["mia_auc_logistic"] <= 1


def test_attacks_balance_the_sides_and_refuse_tiny_ones():
    torch.manual_seed(1)
    out = metrics.membership_inference(
        torch.randn(30, 3),
        torch.zeros(30, dtype=torch.long),
        torch.randn(200, 3),
        torch.zeros(200, dtype=torch.long),
    )
    assert out["mia_n"] == 30 and out["mia_tpr_at_1pct_fpr"] is None
    assert "have 30" in out["notes"]["mia_tpr_at_1pct_fpr"]
    tiny = metrics.membership_inference(
        torch.randn(1, 3),
        torch.zeros(1, dtype=torch.long),
        torch.randn(9, 3),
        torch.zeros(9, dtype=torch.long),
    )
    assert tiny["mia_auc"] is None and tiny["mia_n"] == 1 and "mia_auc" in tiny["notes"]


def test_logistic_attack_matches_sklearn_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)) + np.r_[np.ones(40), np.zeros(40)][:, None] * 0.7
    y = np.r_[np.ones(40), np.zeros(40)]
    clf = LogisticRegression(max_iter=1000, tol=1e-10).fit(x, y)
    w = metrics.logistic_fit(x, y)
    assert np.allclose(w[:-1], clf.coef_[0], atol=1e-4) and w[-1] == pytest.approx(
        clf.intercept_[0], abs=1e-4
    )
    # the attack's cross-validated AUC equals sklearn's pipeline on the same features and folds
    torch.manual_seed(1)
    logits, ys = torch.randn(40, 3) * 2, torch.randint(3, (40,))
    out = metrics.membership_inference(logits[:20], ys[:20], logits[20:], ys[20:], seed=3)
    g = torch.Generator().manual_seed(3)
    i_in, i_out = torch.randperm(20, generator=g), torch.randperm(20, generator=g)
    feats = metrics.confidence_features(
        torch.cat([logits[:20][i_in], logits[20:][i_out]]), torch.cat([ys[:20][i_in], ys[20:][i_out]])
    )
    labels = np.r_[np.ones(20), np.zeros(20)]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, tol=1e-10))
    cv = StratifiedKFold(5, shuffle=True, random_state=3)
    proba = cross_val_predict(pipe, feats, labels, cv=cv, method="predict_proba")[:, 1]
    assert out["mia_auc_logistic"] == pytest.approx(roc_auc_score(labels, proba), abs=1e-6)


def test_comparisons_hand_values():
    assert metrics.backdoor_removal(0.9, 0.45, 0.0) == pytest.approx(0.5)
    assert metrics.backdoor_removal(0.9, 0.1, 0.1) == pytest.approx(1.0)
    assert metrics.backdoor_removal(None, 0.1, 0.0) is None
    assert metrics.restored_pct(0.70, 0.76, 0.80) == pytest.approx(60.0)
    assert metrics.restored_pct(0.8, 0.8, 0.8) is None  # nothing was lost: undefined
    assert metrics.restored_pct(0.982, 0.982, 0.980) is None  # retraining below θ*: undefined
    flip = metrics.compare(
        {"test_acc": 0.76, "asr": None, "relearn_success": 0.5},
        {"test_acc": 0.70, "asr": None},
        {"test_acc": 0.80, "relearn_success": 0.2},
        360,
    )
    assert flip["restored_pct"] == pytest.approx(60.0) and flip["restored_n_test"] == 36  # 0.1 × 360
    assert flip["test_acc_drop"] == pytest.approx(-0.06) and flip["relearn_gap"] == pytest.approx(0.3)
    assert flip["backdoor_removal"] is None
    backdoor = metrics.compare(
        {"test_acc": 0.9, "asr": 0.5}, {"test_acc": 0.9, "asr": 1.0}, {"test_acc": 0.95, "asr": 0.0}, 360
    )
    assert backdoor["backdoor_removal"] == pytest.approx(0.5)
    assert backdoor["restored_pct"] is None and backdoor["restored_n_test"] is None
    assert backdoor["relearn_gap"] is None  # no relearning run
    assert metrics.compare({"test_acc": 0.8}, {"test_acc": 0.9}, None, 10)["restored_pct"] is None


def test_distances_hand_values():
    a, b = linear(0), linear(1)
    with torch.no_grad():
        num = sum(((p - q) ** 2).sum() for p, q in zip(a.parameters(), b.parameters()))
        den = sum((q**2).sum() for q in b.parameters())
    assert metrics.relative_distance(a, b) == pytest.approx(float((num / den).sqrt()), rel=1e-6)
    x = torch.rand(30, 1, 2, 2)
    agree, kl = metrics.output_distance(a, b, x)
    with torch.no_grad():
        pa, pb = F.softmax(a(x), 1), F.softmax(b(x), 1)
    assert agree == pytest.approx(float((pa.argmax(1) == pb.argmax(1)).float().mean()))
    assert kl == pytest.approx(float((pb * (pb.log() - pa.log())).sum(1).mean()), rel=1e-4)
    assert metrics.output_distance(a, a, x) == (1.0, pytest.approx(0.0, abs=1e-7))


class _Data:
    def __init__(self, x, y):
        self.x_test, self.y_test = x, y


def test_evaluate_label_flip_members_are_the_corrected_samples():
    fs, model = tiny_forget_set(), linear()
    ds = _Data(fs.x_train[24:32], fs.y_true[24:32])  # 8 test images = |D_f|: no subsampling
    m = metrics.evaluate(model, ds, fs, reference=linear(1))
    assert set(m) == {*metrics.METRIC_KEYS, "notes"}
    with torch.no_grad():
        pred, f_logits, t_logits = model(fs.x_train).argmax(1), model(fs.x_train[:8]), model(ds.x_test)
    f, labels = fs.forget_idx, np.r_[np.ones(8), np.zeros(8)]
    assert m["forget_acc"] == pytest.approx(float((pred[f] == fs.y_true[f]).float().mean()))
    assert m["forget_acc_poisoned"] == pytest.approx(float((pred[f] == fs.y_train[f]).float().mean()))
    mia = roc_auc_score(labels, np.r_[phi(f_logits, fs.corrected_y), phi(t_logits, ds.y_test)])
    assert m["mia_auc"] == pytest.approx(mia)
    loss = F.cross_entropy(
        torch.cat([f_logits, t_logits]), torch.cat([fs.y_train[f], ds.y_test]), reduction="none"
    )
    assert m["poison_fit_auc"] == pytest.approx(roc_auc_score(labels, -loss.numpy()))
    assert m["asr"] is None and "asr" in m["notes"]
    assert m["relearn_curve"]["steps"] == [0, 1, 2, 5, 10, 20]
    assert m["relearn_curve"]["value"][0] == m["forget_acc_poisoned"]  # label flip: poisoned labels
    bare = metrics.evaluate(model, ds, fs, mia=False, relearn=False)
    assert bare["mia_auc"] is None and bare["relearn_curve"] is None and bare["agreement"] is None
    assert {"mia_auc", "mia_n", "relearn_success", "dist_to_retrained"} <= set(bare["notes"])


def test_evaluate_removal_members_are_the_forget_set():
    fs = tiny_forget_set()
    x, y = fs.x_train, fs.y_true  # removal: trained on the true labels, nothing to correct
    removal = ForgetSet("random_samples", {}, x, y, y, fs.forget_idx, x[:0], y[:0], fs.n_classes)
    model = linear()
    ds = _Data(x[24:32], y[24:32])
    m = metrics.evaluate(model, ds, removal, relearn=False)
    with torch.no_grad():
        s = np.r_[phi(model(x[:8]), y[:8]), phi(model(ds.x_test), ds.y_test)]
    assert m["mia_auc"] == pytest.approx(roc_auc_score(np.r_[np.ones(8), np.zeros(8)], s))
    assert m["poison_fit_auc"] is None and "removal" in m["notes"]["poison_fit_auc"]


def test_unknown_option_is_refused():
    fs = tiny_forget_set()
    with pytest.raises(TypeError, match="relearn_step"):
        metrics.evaluate(linear(), _Data(fs.x_train[20:], fs.y_true[20:]), fs, relearn_step=5)


def test_every_emitted_key_is_described():
    keys = set(metrics.METRIC_KEYS) | set(metrics.COMPARISON_KEYS)
    assert set(metrics.METRICS_INFO) == keys
    units = {"fraction", "auc", "ratio", "percent", "count", "nats", "curve"}
    better = {"higher", "lower", "closer_to_retrained", "closer_to_zero", None}
    for info in metrics.METRICS_INFO.values():
        assert info["unit"] in units and info["better"] in better and info["label"] and info["description"]


def test_shared_backdoor_forward_pass_reuses_nothing_it_should_not(digits):
    """Backdoor: D̃_f are the clean images (not the triggered D_f), so membership is scored on them."""
    from core import scenarios

    fs = scenarios.build(digits, "backdoor", seed=0, size=30, target=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    m = metrics.evaluate(model, digits, fs, relearn=False, seed=2)
    x_c, y_c = fs.corrected
    with torch.no_grad():
        ref = metrics.membership_inference(model(x_c), y_c, model(digits.x_test), digits.y_test, seed=2)
    assert m["mia_auc"] == pytest.approx(ref["mia_auc"]) and m["mia_n"] == 30
