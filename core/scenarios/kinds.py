"""The scenario builders: `kind(dataset, *, seed, **params) -> ForgetSet`, all randomness from `seed`."""

from __future__ import annotations

from typing import Any

import torch

from core.errors import ConfigError
from core.scenarios.forget_set import ForgetSet, make_trigger


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
    if params.get("fraction") is not None and params.get("size") is not None:
        raise ConfigError("scenario.size", "give size or fraction, not both")
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
    return _stamped(dataset, base, pick, trigger, target, keep_trigger=correct == "labels")


def _stamped(dataset, base: dict, pick: torch.Tensor, trigger, target: int, keep_trigger: bool) -> ForgetSet:
    """Stamp `trigger` on the picked training images of `base` and relabel them `target`.

    D̃_f = the clean images with their true labels (`keep_trigger`: the triggered images).
    Evaluation: the triggered non-target test images labelled `target` ("triggered_test", its
    accuracy is the attack success rate) and with their true labels ("triggered_test_true").
    """
    clean = dataset.x_train[pick].clone()
    base["x_train"][pick] = trigger.apply(clean)
    base["y_train"][pick] = target
    corrected_x = base["x_train"][pick].clone() if keep_trigger else clean
    test_mask = dataset.y_test != target
    x_trig = trigger.apply(dataset.x_test[test_mask])
    eval_sets = {
        "triggered_test": (x_trig, torch.full((len(x_trig),), target, dtype=torch.long)),
        "triggered_test_true": (x_trig, dataset.y_test[test_mask].clone()),
    }
    return ForgetSet(
        **base,
        forget_idx=pick,
        corrected_x=corrected_x,
        corrected_y=dataset.y_train[pick].clone(),
        trigger=trigger,
        target=target,
        eval_sets=eval_sets,
    )


def _flip_labels(y: torch.Tensor, n_classes: int, to: int | None) -> torch.Tensor:
    """Warnecke et al.'s flip s -> C-1-s, or every label to class `to`."""
    return torch.full_like(y, to) if to is not None else (n_classes - 1) - y


def label_flip(dataset, *, seed: int = 0, **params) -> ForgetSet:
    """Relabel `size` (or `fraction` of) training samples: s -> C−1−s, or to class `to`.

    `source`: only samples of that class are relabelled (systematic, class-conditional noise: a
    labeller who calls every sandal a sneaker); None: samples of any class (random noise).
    Samples whose label would not change (s = C−1−s, or s = `to`) are never picked.
    D̃_f = the same images with their true labels.
    """
    n_classes = len(dataset.classes)
    to = params.get("to")
    if to is not None:
        to = _check_class(to, n_classes, "scenario.to")
    source = params.get("source")
    flipped = _flip_labels(dataset.y_train, n_classes, to)
    changes = flipped != dataset.y_train
    if source is not None:
        source = _check_class(source, n_classes, "scenario.source")
        changes &= dataset.y_train == source
    candidates = changes.nonzero().squeeze(1)
    if len(candidates) == 0:
        field = "scenario.source" if source is not None else "scenario.to"
        raise ConfigError(field, "no training sample would change its label")
    what = "flippable samples" if source is None else f"flippable samples of class {source}"
    size = _size_from(params, len(candidates), len(dataset.y_train), what, 100)
    pick = candidates[torch.randperm(len(candidates), generator=_rng(seed))[:size]].sort().values
    base = _base(dataset, "label_flip", params)
    base["y_train"][pick] = flipped[pick]
    return ForgetSet(
        **base,
        forget_idx=pick,
        corrected_x=dataset.x_train[pick].clone(),
        corrected_y=dataset.y_train[pick].clone(),
    )


def _removal(dataset, kind: str, params: dict, pick: torch.Tensor) -> ForgetSet:
    base = _base(dataset, kind, params)
    empty_x = dataset.x_train[:0].clone()
    return ForgetSet(**base, forget_idx=pick, corrected_x=empty_x, corrected_y=dataset.y_train[:0].clone())


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
        return ForgetSet(
            **base,
            forget_idx=pick,
            corrected_x=dataset.x_train[pick].clone(),
            corrected_y=dataset.y_train[pick].clone(),
        )
    target = _check_class(params.get("target", 0), n_classes, "scenario.target")
    trigger = make_trigger(dataset.shape, params)
    return _stamped(dataset, base, pick, trigger, target, keep_trigger=False)
