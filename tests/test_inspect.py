"""core.inspect against independent computations: CKA by its feature-space formula and by
hand, weight change by hand, the penultimate features by a manual forward, shares by counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from core import inspect, models


def cka_formula(x: np.ndarray, y: np.ndarray) -> float:
    """‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on column-centered features (the paper's form, p×q side)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_cka_of_features_with_themselves_is_one():
    x = np.random.default_rng(0).normal(size=(50, 7))
    assert inspect.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 6))
    y = x @ rng.normal(size=(6, 4)) + 0.5 * rng.normal(size=(60, 4))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    base = inspect.linear_cka(x, y)
    assert 0.2 < base < 0.99
    assert inspect.linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
    assert inspect.linear_cka(3.7 * x, y) == pytest.approx(base, rel=1e-10)
    assert inspect.linear_cka(x + 5.0, y) == pytest.approx(base, rel=1e-10)  # centering
    assert inspect.linear_cka(x, y) == pytest.approx(cka_formula(x, y), rel=1e-10)
    # not invariant to a general (non-isotropic) linear map
    assert inspect.linear_cka(x @ np.diag([10.0, 1, 1, 1, 1, 0.1]), y) != pytest.approx(base, rel=1e-3)


def test_cka_of_independent_random_features_is_small():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2000, 4)), rng.normal(size=(2000, 4))
    value = inspect.linear_cka(x, y)
    assert 0 <= value < 0.01
    assert value == pytest.approx(cka_formula(x, y), rel=1e-10)


def test_cka_hand_computed_3x2():
    # X is centered; Y centers to [[2, 0], [0, 0], [-2, 0]].
    # XᵀX = [[2, 1], [1, 2]] -> ‖·‖ = √10; YᵀY = [[8, 0], [0, 0]] -> 8; YᵀX = [[4, 2], [0, 0]] -> ‖·‖² = 20
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    y = np.array([[3.0, 5.0], [1.0, 5.0], [-1.0, 5.0]])
    assert inspect.linear_cka(x, y) == pytest.approx(20 / (math.sqrt(10) * 8), abs=1e-12)
    with pytest.raises(ValueError):
        inspect.linear_cka(x, y[:2])


def test_relative_change_hand_computed():
    ref = nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 1))
    with torch.no_grad():
        ref[0].weight.copy_(torch.tensor([[3.0, 4.0]]))
        ref[0].bias.zero_()
        ref[1].weight.fill_(2.0)
        ref[1].bias.fill_(0.0)
    moved = models_copy(ref)
    with torch.no_grad():
        moved[0].weight.copy_(torch.tensor([[3.0, 5.0]]))  # ‖Δ‖ = 1, ‖θ*‖ = 5
        moved[0].bias.fill_(0.0)
    change = inspect.relative_change(moved, ref)
    assert change == {"0": pytest.approx(0.2), "1": 0.0}
    with torch.no_grad():
        moved[1].bias.fill_(2.0)  # layer "1": ‖(0, 2)‖ / ‖(2, 0)‖ = 1
    assert inspect.relative_change(moved, ref)["1"] == pytest.approx(1.0)


def models_copy(m: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(m)


def test_layer_share_equals_mask_counts():
    net = models.CNN(1, 8, 8, 10)
    rng = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=rng) < 0.3 for n, p in net.named_parameters()}
    masks.pop("conv2.bias")  # a parameter without a mask counts as unselected
    share = inspect.layer_share(masks, net)
    assert list(share) == ["conv1", "conv2", "fc1", "fc2"]
    for layer in share:
        sel = sum(int(m.sum()) for n, m in masks.items() if n.startswith(layer + "."))
        tot = sum(p.numel() for n, p in net.named_parameters() if n.startswith(layer + "."))
        assert share[layer] == sel / tot
    full = inspect.layer_share(
        {n: torch.ones_like(p, dtype=torch.bool) for n, p in net.named_parameters()}, net
    )
    assert set(full.values()) == {1.0}


def test_penultimate_is_the_input_of_the_last_linear():
    torch.manual_seed(0)
    x = torch.rand(9, 1, 8, 8)
    cnn = models.CNN(1, 8, 8, 10).train()
    feats, logits = inspect.penultimate(cnn, x, batch_size=4)  # three batches
    assert cnn.training  # mode restored
    with torch.no_grad():
        h = cnn.pool(torch.relu(cnn.conv1(x)))
        h = cnn.pool(torch.relu(cnn.conv2(h)))
        manual = torch.relu(cnn.fc1(h.flatten(1)))
        np.testing.assert_allclose(feats, manual.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(logits, cnn.fc2(manual).numpy(), rtol=1e-5, atol=1e-6)
    res = models.ResNet18(1, 10, width=4)
    res.train()
    feats, _ = inspect.penultimate(res, x)
    res.eval()
    with torch.no_grad():
        out = torch.relu(res.bn1(res.conv1(x)))
        out = res.layer4(res.layer3(res.layer2(res.layer1(out)))).mean(dim=(2, 3))
    np.testing.assert_allclose(feats, out.numpy(), rtol=1e-5, atol=1e-6)
    assert inspect.last_linear(res) is res.fc


def test_layer_grams_give_the_cka_of_each_layers_output():
    torch.manual_seed(1)
    x = torch.rand(40, 1, 8, 8)
    a, b = models.MLP(64, 10), models.MLP(64, 10)
    ga, gb = inspect.layer_grams(a, x), inspect.layer_grams(b, x)
    assert list(ga) == ["fc1", "fc2", "fc3"]
    cka = inspect.cka_to_reference(ga, gb)
    with torch.no_grad():
        fa, fb = a.fc1(x.flatten(1)), b.fc1(x.flatten(1))
        fa2, fb2 = a.fc2(torch.relu(fa)), b.fc2(torch.relu(fb))
    assert cka["fc1"] == pytest.approx(cka_formula(fa.double().numpy(), fb.double().numpy()), rel=1e-9)
    assert cka["fc2"] == pytest.approx(cka_formula(fa2.double().numpy(), fb2.double().numpy()), rel=1e-9)
    assert all(v == pytest.approx(1.0) for v in inspect.cka_to_reference(ga, ga).values())
    # a conv layer's output is flattened per input
    cnn = models.CNN(1, 8, 8, 10)
    grams = inspect.layer_grams(cnn, x)
    with torch.no_grad():
        c1 = cnn.conv1(x).flatten(1).double()
    c1 = c1 - c1.mean(0)
    torch.testing.assert_close(grams["conv1"], c1 @ c1.T)


def test_pca_and_procrustes_against_svd():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 5)) * np.array([5.0, 2.0, 1.0, 0.5, 0.1])
    other = rng.normal(size=(7, 5))
    (cx, co), ratio = inspect.pca_2d(x, other)
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    sign = np.sign(np.sum(cx * (xc @ vt[:2].T), axis=0))  # PCA axes are defined up to sign
    np.testing.assert_allclose(cx * sign, xc @ vt[:2].T, atol=1e-9)
    np.testing.assert_allclose(co * sign, (other - x.mean(0)) @ vt[:2].T, atol=1e-9)
    np.testing.assert_allclose(ratio, (s[:2] ** 2) / np.sum(s**2), rtol=1e-9)
    theta = 0.7
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    flip = np.diag([1.0, -1.0])
    r = inspect.procrustes_2d(cx, cx @ rot @ flip)
    np.testing.assert_allclose(r, rot @ flip, atol=1e-9)
