"""Model registry `MODELS` (name, label, description, build); `build(name, dataset)` -> nn.Module
sized for the dataset's images.

Every model maps N×C×H×W float32 images to N×K logits (K = number of classes).
Parameter names are readable (`conv1.weight`, `fc2.bias`, ...) because masks, scores and
plots are keyed by them.

Parameter counts (K = 10 classes):
    mlp       8×8×1 (digits): 17,226      28×28×1: 109,386       32×32×3: 402,250
    mlp_wide  8×8×1 (digits): 1,126,410   28×28×1: 1,863,690     32×32×3: 4,206,602
    cnn       8×8×1 (digits): 13,706      28×28×1: 105,866       32×32×3: 136,874
    resnet18  1 channel: 11,172,810 at any size; 3 channels: 11,173,962
Run `python -m core models` for the exact counts on every bundled dataset.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError


class MLP(nn.Module):
    """Flatten -> 128 -> ReLU -> 64 -> ReLU -> K (or other `hidden` widths). Piecewise linear
    (exact Hessian = GGN)."""

    def __init__(self, in_features: int, n_classes: int, hidden: tuple[int, int] = (128, 64)):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class CNN(nn.Module):
    """Two 3×3 conv + ReLU + 2×2 max-pool blocks, then a 64-unit dense layer and the classifier.

    Fits 8×8 (digits), 28×28 (MNIST/Fashion-MNIST) and 32×32 (CIFAR-10) inputs: the flatten
    size is (H//4)·(W//4)·32.
    """

    def __init__(self, in_channels: int, height: int, width: int, n_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * (height // 4) * (width // 4), 64)
        self.fc2 = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    """ResNet basic block: conv-BN-ReLU-conv-BN + (projected) shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18, small-image variant (3×3 stem, no stem max-pool), as used for CIFAR-10.

    Global average pooling makes it fit any input of at least 8×8.
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        planes, layers, in_planes = [width, 2 * width, 4 * width, 8 * width], [], width
        for i, p in enumerate(planes):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(in_planes, p, stride), BasicBlock(p, p, 1)))
            in_planes = p
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(8 * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = out.mean(dim=(2, 3))
        return self.fc(out)


def _mlp(shape: tuple[int, int, int], n_classes: int, hidden: tuple[int, int] = (128, 64)) -> nn.Module:
    c, h, w = shape
    return MLP(c * h * w, n_classes, hidden)


def _cnn(shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    c, h, w = shape
    return CNN(c, h, w, n_classes)


def _resnet18(shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    return ResNet18(shape[0], n_classes)


@dataclass(frozen=True)
class Architecture:
    """A registry entry: `build(shape (C, H, W), n_classes) -> nn.Module`."""

    name: str
    label: str
    description: str
    build: Callable[[tuple[int, int, int], int], nn.Module]


MODELS: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("mlp", "MLP", "two hidden ReLU layers (128, 64)", _mlp),
        Architecture(
            "mlp_wide",
            "Wide MLP",
            "two hidden ReLU layers (1024, 1024): the capacity to memorize noisy labels",
            functools.partial(_mlp, hidden=(1024, 1024)),
        ),
        Architecture("cnn", "CNN", "2× (conv3×3 + ReLU + max-pool) + dense 64 + classifier", _cnn),
        Architecture("resnet18", "ResNet-18", "ResNet-18 small-image variant with BatchNorm", _resnet18),
    )
}


def build(name: str, dataset: Any, *, seed: int | None = None) -> nn.Module:
    """Build model `name` for `dataset` (anything with `.shape` = (C, H, W) and `.classes`).

    With `seed`, the initial weights are drawn from that seed (same seed -> same weights).
    """
    if name not in MODELS:
        raise ConfigError("model", f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    make = MODELS[name].build
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make(tuple(dataset.shape), len(dataset.classes))
    return make(tuple(dataset.shape), len(dataset.classes))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
