"""Models fit every bundled image size; parameter counts match hand counts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core import models
from core.errors import ConfigError


def _ds(shape, k=10):
    return SimpleNamespace(shape=shape, classes=list(range(k)))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
def test_output_shape(name, shape):
    m = models.build(name, _ds(shape), seed=0).eval()
    assert m(torch.zeros(2, *shape)).shape == (2, 10)


def test_cnn_parameter_count_by_hand():
    # conv1 1*16*9+16, conv2 16*32*9+32, fc1 (32*2*2)*64+64, fc2 64*10+10
    expected = (16 * 9 + 16) + (16 * 32 * 9 + 32) + (128 * 64 + 64) + (64 * 10 + 10)
    assert models.count_parameters(models.build("cnn", _ds((1, 8, 8)))) == expected == 13706
    mlp = models.build("mlp", _ds((1, 8, 8)))
    assert models.count_parameters(mlp) == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10


def test_seeded_init_is_reproducible():
    a = models.build("cnn", _ds((1, 8, 8)), seed=3)
    b = models.build("cnn", _ds((1, 8, 8)), seed=3)
    c = models.build("cnn", _ds((1, 8, 8)), seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_unknown_model():
    with pytest.raises(ConfigError, match="model"):
        models.build("vgg", _ds((1, 8, 8)))


@pytest.mark.parametrize(
    "name, shape, count",
    [
        ("mlp", (3, 32, 32), 3072 * 128 + 128 + 128 * 64 + 64 + 650),
        ("mlp_wide", (1, 8, 8), 1_126_410),
        ("mlp_wide", (1, 28, 28), 1_863_690),
        ("mlp_wide", (3, 32, 32), 4_206_602),
        ("cnn", (1, 28, 28), 160 + 4640 + (32 * 7 * 7) * 64 + 64 + 650),
        ("cnn", (3, 32, 32), (3 * 16 * 9 + 16) + 4640 + (32 * 8 * 8) * 64 + 64 + 650),
        ("resnet18", (3, 32, 32), 11_173_962),
    ],
)
def test_documented_parameter_counts(name, shape, count):
    model = models.build(name, _ds(shape))
    assert models.count_parameters(model) == count
    assert f"{count:,}" in models.__doc__


def test_registry_entries_build_their_model():
    for name, entry in models.MODELS.items():
        assert entry.name == name and entry.label and entry.description
        model = models.build(name, _ds((1, 8, 8)), seed=0)
        assert type(model) is type(entry.build((1, 8, 8), 10))
