"""Metrics against sklearn and hand-computed values on small cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from core import metrics
from tests.test_unlearning import linear, tiny_forget_set


class Fixed(nn.Module):
    """Returns given logits for inputs indexed by their first pixel (an integer id)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits.clone())

    def forward(self, x):
        return self.logits[x.flatten(1)[:, 0].long()]


def test_tpr_at_fpr_hand_case():
    labels = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.4, 0.5, 0.1, 0.8, 0.3])
    assert metrics.tpr_at_fpr(labels, scores, 0.0) == pytest.approx(2 / 3)  # 0.9, 0.8 above every negative
    assert metrics.tpr_at_fpr(labels, scores, 0.34) == pytest.approx(1.0)


def test_loss_attack_auc_matches_sklearn_on_losses():
    torch.manual_seed(0)
    logits = torch.randn(20, 3) * 3
    model = Fixed(logits)
    x = torch.arange(20).float().view(20, 1, 1, 1)
    y = torch.randint(3, (20,))
    members, non_members = (x[:10], y[:10]), (x[10:], y[10:])
    out = metrics.membership_inference(model, members, non_members)
    loss = F.cross_entropy(logits, y, reduction="none").detach().numpy()
    labels = np.r_[np.ones(10), np.zeros(10)]
    # the attack subsamples each side (all 10 here) in a seeded order: AUC is order-free
    assert out["mia_auc"] == pytest.approx(roc_auc_score(labels, -loss))
    assert 0 <= out["mia_auc_logistic"] <= 1 and 0 <= out["mia_tpr_at_1pct_fpr"] <= 1


def test_comparisons_hand_values():
    assert metrics.backdoor_removal(0.9, 0.45, 0.0) == pytest.approx(0.5)
    assert metrics.backdoor_removal(0.9, 0.1, 0.1) == pytest.approx(1.0)
    assert metrics.backdoor_removal(None, 0.1, 0.0) is None
    assert metrics.restored_pct(0.70, 0.76, 0.80) == pytest.approx(60.0)
    assert metrics.restored_pct(0.8, 0.8, 0.8) is None  # nothing was lost: undefined


def test_distances_hand_values():
    a, b = linear(0), linear(1)
    num = sum(((p - q) ** 2).sum() for p, q in zip(a.parameters(), b.parameters()))
    den = sum((q**2).sum() for q in b.parameters())
    assert metrics.relative_distance(a, b) == pytest.approx(float((num / den).sqrt()), rel=1e-6)
    x = torch.rand(30, 1, 2, 2)
    agree, kl = metrics.output_distance(a, b, x)
    pa, pb = F.softmax(a(x), 1), F.softmax(b(x), 1)
    assert agree == pytest.approx(float((pa.argmax(1) == pb.argmax(1)).float().mean()))
    assert kl == pytest.approx(float((pb * (pb.log() - pa.log())).sum(1).mean()), rel=1e-4)
    assert metrics.output_distance(a, a, x) == (1.0, pytest.approx(0.0, abs=1e-7))


class _Data:
    def __init__(self, fs):
        self.x_test, self.y_test = fs.x_train[20:], fs.y_true[20:]


def test_evaluate_has_every_key_and_hand_accuracies():
    fs, model = tiny_forget_set(), linear()
    ds = _Data(fs)
    m = metrics.evaluate(model, ds, fs, reference=linear(1), mia=True, relearn=True)
    for k in metrics.METRIC_KEYS + metrics.EXTRA_KEYS:
        assert k in m
    pred = model(fs.x_train).argmax(1)
    f = fs.forget_idx
    assert m["forget_acc"] == pytest.approx(float((pred[f] == fs.y_true[f]).float().mean()))
    assert m["forget_acc_poisoned"] == pytest.approx(float((pred[f] == fs.y_train[f]).float().mean()))
    assert m["asr"] is None and m["relearn_asr"] is None  # not a backdoor
    assert m["dist_to_retrained"] is not None and m["mia_auc"] is not None
    bare = metrics.evaluate(model, ds, fs, mia=False, relearn=False)
    assert bare["mia_auc"] is None and bare["dist_to_retrained"] is None and bare["agreement"] is None


def test_relearning_attack_restores_a_backdoor_on_a_copy(digits):
    from core import scenarios

    fs = scenarios.build(digits, "backdoor", seed=0, size=30, target=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    before = [p.detach().clone() for p in model.parameters()]
    asr0 = metrics.attack_success_rate(model, fs)
    asr = metrics.relearn_attack(model, fs, samples=30, steps=50, lr=0.05)
    assert asr > asr0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


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
    logits = torch.randn(40, 3) * 2
    model = Fixed(logits)
    xs = torch.arange(40).float().view(40, 1, 1, 1)
    ys = torch.randint(3, (40,))
    out = metrics.membership_inference(model, (xs[:20], ys[:20]), (xs[20:], ys[20:]), seed=3)
    g = torch.Generator().manual_seed(3)
    i_in, i_out = torch.randperm(20, generator=g), torch.randperm(20, generator=g)
    feats = metrics.confidence_features(torch.cat([logits[:20][i_in], logits[20:][i_out]]).detach(),
                                        torch.cat([ys[:20][i_in], ys[20:][i_out]]))  # fmt: skip
    labels = np.r_[np.ones(20), np.zeros(20)]
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, tol=1e-10))
    proba = cross_val_predict(pipe, feats, labels, cv=StratifiedKFold(5, shuffle=True, random_state=3),
                              method="predict_proba")[:, 1]  # fmt: skip
    assert out["mia_auc_logistic"] == pytest.approx(roc_auc_score(labels, proba), abs=1e-6)
