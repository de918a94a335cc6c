"""The Forget set page's data: typed, clicked and box-selected sample indices, the D_f gallery, and the
current scenario's damage as an `indices` corruption."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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


def picked_indices(event: Any, n_shown: int | None = None) -> list[int]:
    """Training-sample indices of the squares clicked or box-selected in the sample picker, whose
    one trace draws sample i as point i.

    `event` is what st.plotly_chart(on_select=...) delivers: {"selection": {"points": [...],
    "point_indices": [...], "box": [...], "lasso": [...]}}, or its "selection", or its "points".
    A point is {"curve_number": 0, "point_number": i, "point_index": i, "x", "y",
    "customdata": ...}; customdata of a numpy-built trace arrives as a JSON object
    {"0": i, "1": label} (a typed-array row), not a list, so it is never indexed by 0 here.
    Points of other traces and indices outside 0..n_shown−1 are ignored."""
    if isinstance(event, Mapping) and "selection" in event:
        event = event["selection"]
    if isinstance(event, Mapping):
        points, found = (
            event.get("points") or [],
            {i for i in event.get("point_indices") or [] if isinstance(i, int)},
        )
    else:
        points, found = event or [], set()
    for p in points:
        i = p.get("point_index", p.get("point_number")) if isinstance(p, Mapping) else None
        if isinstance(i, int) and p.get("curve_number", 0) == 0:
            found.add(i)
    return sorted(i for i in found if i >= 0 and (n_shown is None or i < n_shown))


def toggle(chosen: Iterable[int], picked: Iterable[int]) -> list[int]:
    """The selection after a pick: squares already all chosen are dropped (a click on a chosen
    square removes it), otherwise the picked ones are added (a box adds everything in it)."""
    chosen, picked = set(chosen), set(picked)
    return sorted(chosen - picked if picked and picked <= chosen else chosen | picked)


def needs_pick(settings: dict) -> bool:
    """Whether the user chose the `indices` scenario and has not picked any sample yet."""
    return settings["scenario"] == "indices" and not settings["indices"]


def picker_config(settings: dict, prepare: Callable[[dict], Any]) -> dict | None:
    """A normalized config that loads the same training data as `settings` (for the picker when no
    sample is picked yet: a one-sample random forget set stands in for the empty pick), checked
    by `prepare(cfg)` (ui.cache.prepared); None when the data cannot be loaded (the other pages
    name the problem)."""
    from core import config as core_config
    from core.errors import SapsError
    from ui.state import build_config

    stand_in = {**settings, "scenario": "random_samples", "size": 1}
    try:
        cfg = core_config.normalize(build_config(stand_in, strategies=False))
        prepare(cfg)
    except SapsError:
        return None
    return cfg


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
