"""The forget set of a scenario (D = D_r ∪ D_f as trained, D̃_f, evaluation sets) and triggers."""

from __future__ import annotations

import math
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


def make_trigger(shape: tuple[int, int, int], params: dict) -> Trigger:
    """Trigger from params `patch` (side in pixels), `position`, `value` (in [0, 1] units), `pattern`."""
    _, h, w = shape
    patch = params.get("patch", min(max(3, h // 8), min(h, w) // 2))  # the default fits 4×4 images too
    if isinstance(patch, bool) or not isinstance(patch, int) or not 1 <= patch <= min(h, w) // 2:
        raise ConfigError("scenario.patch", f"must be an integer in 1..{min(h, w) // 2}, got {patch!r}")
    position = params.get("position", "bottom-right")
    if isinstance(position, list):
        position = tuple(position)
    if isinstance(position, tuple):
        ok = len(position) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in position)
        if not ok or not (0 <= position[0] <= h - patch and 0 <= position[1] <= w - patch):
            raise ConfigError(
                "scenario.position",
                f"[row, col] must place the patch inside {h}×{w}, got {list(position) if ok else position!r}",
            )
    elif position not in POSITIONS:
        raise ConfigError(
            "scenario.position",
            f"unknown position {position!r}; choose one of {list(POSITIONS)} or [row, col]",
        )
    value = params.get("value", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError("scenario.value", f"must be a finite number, got {value!r}")
    pattern = params.get("pattern", "checker")
    if pattern not in PATTERNS:
        raise ConfigError("scenario.pattern", f"unknown pattern {pattern!r}; choose one of {list(PATTERNS)}")
    return Trigger(patch, position, float(value), pattern)
