"""Forget scenarios: which training samples carry something that must go, and their fix.

`build(dataset, kind, seed=0, **params)` returns a ForgetSet: the training set as the
original model saw it (D = D_r ∪ D_f), the indices of D_f, the corrected samples D̃_f
(empty for plain removal), and extra evaluation sets (triggered test images for a backdoor).
Retraining on D_r ∪ D̃_f gives the gold-standard model every unlearning method is compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from core.errors import ConfigError

POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")
PATTERNS = ("checker", "solid")


@dataclass(frozen=True)
class Trigger:
    """A square patch stamped at `position` (a backdoor trigger).

    pattern "checker": `value` on the cells whose row + column is even, 0 elsewhere (a pattern
    no digit or garment has, so a model that never saw it has no reason to map it to the
    target); "solid": every cell `value`.
    """

    patch: int
    position: str | tuple[int, int]
    value: float
    pattern: str = "checker"

    def origin(self, height: int, width: int) -> tuple[int, int]:
        p = self.patch
        if isinstance(self.position, tuple):
            return self.position
        return {
            "bottom-right": (height - p, width - p),
            "bottom-left": (height - p, 0),
            "top-right": (0, width - p),
            "top-left": (0, 0),
            "center": ((height - p) // 2, (width - p) // 2),
        }[self.position]

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """A copy of N×C×H×W `images` with the patch stamped on every channel."""
        out = images.clone()
        r, c = self.origin(images.shape[-2], images.shape[-1])
        out[..., r : r + self.patch, c : c + self.patch] = self.stamp().to(images.dtype)
        return out

    def stamp(self) -> torch.Tensor:
        """The patch itself, patch×patch."""
        if self.pattern == "solid":
            return torch.full((self.patch, self.patch), self.value)
        i = torch.arange(self.patch)
        return ((i[:, None] + i[None, :]) % 2 == 0).float() * self.value

    def to_dict(self) -> dict:
        return {"patch": self.patch, "position": self.position, "value": self.value, "pattern": self.pattern}


@dataclass
class ForgetSet:
    """D = D_r ∪ D_f as trained, plus D̃_f and evaluation sets.

    Shapes: x_train N×C×H×W (as trained, triggers stamped), y_train N (as trained, poisoned
    labels), y_true N (the correct labels), forget_idx F (indices into the training set),
    corrected_x/corrected_y: D̃_f (F' ≤ F samples; empty for plain removal).
    eval_sets: name -> (x, y), e.g. "triggered_test" = triggered test images of non-target
    classes labelled with the target (accuracy on it = attack success rate).
    """

    kind: str
    params: dict
    x_train: torch.Tensor
    y_train: torch.Tensor
    y_true: torch.Tensor
    forget_idx: torch.Tensor
    corrected_x: torch.Tensor
    corrected_y: torch.Tensor
    n_classes: int
    trigger: Trigger | None = None
    target: int | None = None
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def retain_idx(self) -> torch.Tensor:
        keep = torch.ones(len(self.y_train), dtype=torch.bool)
        keep[self.forget_idx] = False
        return keep.nonzero().squeeze(1)

    @property
    def forget(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D_f as trained on (inputs, poisoned labels)."""
        return self.x_train[self.forget_idx], self.y_train[self.forget_idx]

    @property
    def forget_true(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D_f inputs as trained with their correct labels (for forget accuracy)."""
        return self.x_train[self.forget_idx], self.y_true[self.forget_idx]

    @property
    def corrected(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D̃_f: the same samples fixed (empty for plain removal)."""
        return self.corrected_x, self.corrected_y

    @property
    def retain(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.retain_idx
        return self.x_train[idx], self.y_train[idx]

    @property
    def is_removal(self) -> bool:
        return len(self.corrected_y) == 0

    def retrain_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """D_r ∪ D̃_f: what the gold-standard model is trained on."""
        x_r, y_r = self.retain
        return torch.cat([x_r, self.corrected_x]), torch.cat([y_r, self.corrected_y])

    def summary(self) -> dict[str, Any]:
        """Small JSON-able description (sizes and class histogram of D_f)."""
        hist = torch.bincount(self.y_true[self.forget_idx], minlength=self.n_classes)
        return {
            "kind": self.kind,
            "params": self.params,
            "n_train": len(self.y_train),
            "n_forget": len(self.forget_idx),
            "n_corrected": len(self.corrected_y),
            "forget_class_histogram": hist.tolist(),
            "target": self.target,
            "trigger": self.trigger.to_dict() if self.trigger else None,
        }


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _check_class(value: Any, n_classes: int, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"must be a class index (integer), got {value!r}")
    if not 0 <= value < n_classes:
        raise ConfigError(field_name, f"class {value} out of range 0..{n_classes - 1}")
    return value


def _check_count(value: Any, available: int, field_name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"must be a positive integer, got {value!r}")
    if value < 1:
        raise ConfigError(field_name, f"must be at least 1, got {value}")
    if value > available:
        raise ConfigError(field_name, f"{value} requested but only {available} {what} exist")
    return value


def _size_from(params: dict, available: int, n_train: int, what: str, default: int) -> int:
    if "fraction" in params and params["fraction"] is not None:
        f = params["fraction"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ConfigError("scenario.fraction", f"must be a number in (0, 1], got {f!r}")
        return _check_count(max(1, round(f * n_train)), available, "scenario.fraction", what)
    return _check_count(params.get("size", default), available, "scenario.size", what)


def _base(dataset, kind: str, params: dict) -> dict:
    return dict(
        kind=kind,
        params=params,
        x_train=dataset.x_train.clone(),
        y_train=dataset.y_train.clone(),
        y_true=dataset.y_train.clone(),
        n_classes=len(dataset.classes),
    )


def make_trigger(shape: tuple[int, int, int], params: dict) -> Trigger:
    """Trigger from params `patch` (side in pixels), `position`, `value` (in [0, 1] units), `pattern`."""
    _, h, w = shape
    patch = params.get("patch", max(3, h // 8))
    if isinstance(patch, bool) or not isinstance(patch, int) or not 1 <= patch <= min(h, w) // 2:
        raise ConfigError("scenario.patch", f"must be an integer in 1..{min(h, w) // 2}, got {patch!r}")
    position = params.get("position", "bottom-right")
    if isinstance(position, list):
        position = tuple(position)
    if isinstance(position, tuple):
        ok = len(position) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in position)
        if not ok or not (0 <= position[0] <= h - patch and 0 <= position[1] <= w - patch):
            raise ConfigError("scenario.position", f"[row, col] must place the patch inside "
                              f"{h}×{w}, got {list(position) if ok else position!r}")  # fmt: skip
    elif position not in POSITIONS:
        raise ConfigError("scenario.position", f"unknown position {position!r}; choose one of "
                          f"{list(POSITIONS)} or [row, col]")  # fmt: skip
    value = params.get("value", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError("scenario.value", f"must be a number, got {value!r}")
    pattern = params.get("pattern", "checker")
    if pattern not in PATTERNS:
        raise ConfigError("scenario.pattern", f"unknown pattern {pattern!r}; choose one of {list(PATTERNS)}")
    return Trigger(patch, position, float(value), pattern)


def backdoor(dataset, *, seed: int = 0, **params) -> ForgetSet:
    """Stamp a trigger on `size` training images of non-target classes, relabel them `target`.

    D̃_f = the clean images with their true labels (`correct: "labels"` keeps the trigger and
    fixes only the labels). Evaluation: triggered test images of non-target classes, labelled
    `target`; the accuracy on them is the attack success rate.
    """
    n_classes = len(dataset.classes)
    target = _check_class(params.get("target", 0), n_classes, "scenario.target")
    if n_classes < 2:
        raise ConfigError("scenario.target", "a backdoor needs at least one non-target class")
    correct = params.get("correct", "all")
    if correct not in ("all", "labels"):
        raise ConfigError("scenario.correct", f"must be 'all' or 'labels', got {correct!r}")
    trigger = make_trigger(dataset.shape, params)
    candidates = (dataset.y_train != target).nonzero().squeeze(1)
    size = _size_from(params, len(candidates), len(dataset.y_train), "non-target training samples", 60)
    pick = candidates[torch.randperm(len(candidates), generator=_rng(seed))[:size]].sort().values
    base = _base(dataset, "backdoor", params)
    clean = base["x_train"][pick].clone()
    base["x_train"][pick] = trigger.apply(clean)
    base["y_train"][pick] = target
    corrected_x = base["x_train"][pick].clone() if correct == "labels" else clean
    test_mask = dataset.y_test != target
    x_trig = trigger.apply(dataset.x_test[test_mask])
    eval_sets = {
        "triggered_test": (x_trig, torch.full((len(x_trig),), target, dtype=torch.long)),
        "triggered_test_true": (x_trig, dataset.y_test[test_mask].clone()),
    }
    return ForgetSet(**base, forget_idx=pick, corrected_x=corrected_x,
                     corrected_y=dataset.y_train[pick].clone(), trigger=trigger, target=target,
                     eval_sets=eval_sets)  # fmt: skip


def _flip_labels(y: torch.Tensor, n_classes: int, to: int | None) -> torch.Tensor:
    """Warnecke et al.'s flip s -> C-1-s, or every label to class `to`."""
    return torch.full_like(y, to) if to is not None else (n_classes - 1) - y


def label_flip(dataset, *, seed: int = 0, **params) -> ForgetSet:
    """Relabel `size` (or `fraction` of) training samples: s -> C−1−s, or to class `to`.

    Samples whose label would not change (s = C−1−s, or s = `to`) are never picked.
    D̃_f = the same images with their true labels.
    """
    n_classes = len(dataset.classes)
    to = params.get("to")
    if to is not None:
        to = _check_class(to, n_classes, "scenario.to")
    flipped = _flip_labels(dataset.y_train, n_classes, to)
    candidates = (flipped != dataset.y_train).nonzero().squeeze(1)
    if len(candidates) == 0:
        raise ConfigError("scenario.to", "no training sample would change its label")
    size = _size_from(params, len(candidates), len(dataset.y_train), "flippable samples", 100)
    pick = candidates[torch.randperm(len(candidates), generator=_rng(seed))[:size]].sort().values
    base = _base(dataset, "label_flip", params)
    base["y_train"][pick] = flipped[pick]
    return ForgetSet(**base, forget_idx=pick, corrected_x=dataset.x_train[pick].clone(),
                     corrected_y=dataset.y_train[pick].clone())  # fmt: skip


def _removal(dataset, kind: str, params: dict, pick: torch.Tensor) -> ForgetSet:
    base = _base(dataset, kind, params)
    empty_x = dataset.x_train[:0].clone()
    return ForgetSet(**base, forget_idx=pick, corrected_x=empty_x,
                     corrected_y=dataset.y_train[:0].clone())  # fmt: skip


def random_samples(dataset, *, seed: int = 0, **params) -> ForgetSet:
    """Plain removal of `size` (or `fraction` of) random training samples; D̃_f is empty."""
    n = len(dataset.y_train)
    size = _size_from(params, n - 1, n, "removable samples (one must remain)", 100)
    pick = torch.randperm(n, generator=_rng(seed))[:size].sort().values
    return _removal(dataset, "random_samples", params, pick)


def forget_class(dataset, *, seed: int = 0, **params) -> ForgetSet:
    """Plain removal of every training sample of class `class`; D̃_f is empty.

    Evaluation: the test images of that class ("forgotten_class_test").
    """
    n_classes = len(dataset.classes)
    c = _check_class(params.get("class", 0), n_classes, "scenario.class")
    pick = (dataset.y_train == c).nonzero().squeeze(1)
    if len(pick) == 0:
        raise ConfigError("scenario.class", f"class {c} has no training samples")
    if len(pick) == len(dataset.y_train):
        raise ConfigError("scenario.class", f"class {c} is the only class; nothing would remain")
    fs = _removal(dataset, "class", params, pick)
    test_mask = dataset.y_test == c
    fs.eval_sets["forgotten_class_test"] = (dataset.x_test[test_mask], dataset.y_test[test_mask])
    return fs


CORRUPTIONS = ("remove", "label", "backdoor")


def indices(dataset, *, seed: int = 0, **params) -> ForgetSet:
    """User-chosen training samples `indices` with `corruption`: remove, label or backdoor.

    `label` relabels them (s -> C−1−s or to `to`); `backdoor` stamps the trigger and relabels
    them `target` (trigger options as in `backdoor`); `remove` is plain removal.
    """
    raw = params.get("indices")
    n = len(dataset.y_train)
    if not isinstance(raw, (list, tuple)) or len(raw) == 0:
        raise ConfigError("scenario.indices", "must be a non-empty list of training-sample indices")
    bad = [i for i in raw if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n]
    if bad:
        raise ConfigError("scenario.indices", f"indices must be integers in 0..{n - 1}; bad: {bad[:5]}")
    pick = torch.tensor(sorted(set(raw)), dtype=torch.long)
    corruption = params.get("corruption", "remove")
    if corruption not in CORRUPTIONS:
        raise ConfigError(
            "scenario.corruption", f"unknown corruption {corruption!r}; choose one of {list(CORRUPTIONS)}"
        )
    if corruption == "remove":
        if len(pick) >= n:
            raise ConfigError("scenario.indices", "cannot remove every training sample")
        return _removal(dataset, "indices", params, pick)
    base = _base(dataset, "indices", params)
    n_classes = len(dataset.classes)
    if corruption == "label":
        to = params.get("to")
        if to is not None:
            to = _check_class(to, n_classes, "scenario.to")
        base["y_train"][pick] = _flip_labels(dataset.y_train[pick], n_classes, to)
        return ForgetSet(**base, forget_idx=pick, corrected_x=dataset.x_train[pick].clone(),
                         corrected_y=dataset.y_train[pick].clone())  # fmt: skip
    target = _check_class(params.get("target", 0), n_classes, "scenario.target")
    trigger = make_trigger(dataset.shape, params)
    base["x_train"][pick] = trigger.apply(dataset.x_train[pick])
    base["y_train"][pick] = target
    test_mask = dataset.y_test != target
    x_trig = trigger.apply(dataset.x_test[test_mask])
    eval_sets = {
        "triggered_test": (x_trig, torch.full((len(x_trig),), target, dtype=torch.long)),
        "triggered_test_true": (x_trig, dataset.y_test[test_mask].clone()),
    }
    return ForgetSet(**base, forget_idx=pick, corrected_x=dataset.x_train[pick].clone(),
                     corrected_y=dataset.y_train[pick].clone(), trigger=trigger, target=target,
                     eval_sets=eval_sets)  # fmt: skip


SCENARIOS: dict[str, Callable[..., ForgetSet]] = {
    "backdoor": backdoor,
    "label_flip": label_flip,
    "random_samples": random_samples,
    "class": forget_class,
    "indices": indices,
}

PARAMS: dict[str, set[str]] = {
    "backdoor": {"size", "fraction", "target", "patch", "position", "value", "pattern", "correct"},
    "label_flip": {"size", "fraction", "to"},
    "random_samples": {"size", "fraction"},
    "class": {"class"},
    "indices": {"indices", "corruption", "to", "target", "patch", "position", "value", "pattern"},
}


def build(dataset, kind: str = "backdoor", *, seed: int = 0, **params) -> ForgetSet:
    """Build the forget scenario `kind` on `dataset`; all randomness comes from `seed`."""
    if kind not in SCENARIOS:
        raise ConfigError("scenario.kind", f"unknown scenario {kind!r}; choose one of {sorted(SCENARIOS)}")
    unknown = set(params) - PARAMS[kind]
    if unknown:
        raise ConfigError(f"scenario.{sorted(unknown)[0]}",
                          f"not a parameter of {kind!r}; allowed: {sorted(PARAMS[kind])}")  # fmt: skip
    return SCENARIOS[kind](dataset, seed=seed, **params)
