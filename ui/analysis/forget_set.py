"""The Forget set page's data: typed and clicked sample indices, the D_f gallery, and the
current scenario's damage as an `indices` corruption."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def parse_indices(text: str, n_train: int) -> tuple[list[int], list[str]]:
    """Training-sample indices typed as "3, 17, 42" -> (valid indices, problems): a token that
    is not an integer or is outside 0..n_train−1 is reported, never silently kept."""
    good, problems = [], []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        try:
            i = int(token)
        except ValueError:
            problems.append(f"{token!r} is not an integer")
            continue
        if not 0 <= i < n_train:
            problems.append(f"{i} is outside 0..{n_train - 1}")
            continue
        good.append(i)
    return sorted(set(good)), problems


def picked_indices(points: Iterable[dict]) -> list[int]:
    """Training-sample indices of the squares clicked or box-selected in the sample picker (its
    one trace draws sample i as point i)."""
    return sorted({int(p["point_index"]) for p in points if "point_index" in p})


def gallery(forget_set: Any, n: int) -> tuple[tuple, tuple | None]:
    """The first `n` samples of D_f as (images, titles) as trained, and as corrected (None for a
    removal, where D̃_f is empty)."""
    idx = forget_set.forget_idx[:n]
    ids = idx.tolist()
    trained = (
        forget_set.x_train[idx].numpy(),
        [f"#{i}<br>y={y}" for i, y in zip(ids, forget_set.y_train[idx].tolist())],
    )
    if forget_set.is_removal:
        return trained, None
    k = min(n, len(forget_set.corrected_y))
    titles = [f"#{i}<br>y={y}" for i, y in zip(ids[:k], forget_set.corrected_y[:k].tolist())]
    return trained, (forget_set.corrected_x[:k].numpy(), titles)


def corruption_of(settings: dict) -> str:
    """The damage of the current scenario as an `indices` corruption (for "use this selection")."""
    kind = settings["scenario"]
    if kind == "indices":
        return settings["corruption"]
    return {"backdoor": "backdoor", "label_flip": "label"}.get(kind, "remove")
