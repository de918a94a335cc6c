"""The dashboard's choices and their labels, read from the core registries (no Streamlit).

Nothing here lists a strategy, method, estimator, scenario, model or data set by name: an entry
added to its registry (`core.selection.STRATEGIES`, `core.unlearning.METHODS`,
`core.curvature.ESTIMATORS`, `core.scenarios.SCENARIOS`, `core.models.MODELS`,
`core.data.DATASETS`) is offered by every page, with its label and description. The
registries are read on every call, never copied at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SMALLEST = "_smallest"


def _registry(name: str) -> dict[str, Any]:
    from core import curvature, data, models, scenarios, selection, unlearning

    return {
        "strategies": selection.STRATEGIES,
        "methods": unlearning.METHODS,
        "estimators": curvature.ESTIMATORS,
        "scenarios": scenarios.SCENARIOS,
        "models": models.MODELS,
        "datasets": data.DATASETS,
    }[name]


def labels(registry: str) -> dict[str, str]:
    """{name: label} of a registry ("scenarios", "estimators", "models", "datasets", "methods")."""
    return {name: entry.label for name, entry in _registry(registry).items()}


def _about(entry: Any) -> str:
    """An entry's description; data sets carry none, but say whether they need local files."""
    text = getattr(entry, "description", "")
    if getattr(entry, "needs_root", False):
        text = (text + "; " if text else "") + "needs local files (root)"
    return text


def describe(registry: str, names: list[str] | None = None) -> str:
    """Help text: one "**label**: description" line per entry (markdown)."""
    entries = _registry(registry)
    lines = [
        f"**{entries[n].label}**" + (f": {about}" if (about := _about(entries[n])) else "")
        for n in names or entries
    ]
    return "  \n".join(lines)


# -- strategies -------------------------------------------------------------------------------
def strategies() -> dict[str, dict[str, Any]]:
    """Choice key -> strategy config entry (without a budget): one per registry entry, and a
    `<name>_smallest` twin for a budgeted strategy whose reversed ranking the registry labels
    as a different variant (SAPS on the flattest coordinates; not a random draw reversed)."""
    from core.selection import STRATEGIES, strategy_label

    out: dict[str, dict[str, Any]] = {}
    for name, entry in STRATEGIES.items():
        if not entry.budgeted:
            out[name] = {"name": name}
            continue
        out[name] = {"name": name, "largest": True}
        smallest = {"name": name, "largest": False}
        if strategy_label(smallest) != strategy_label(out[name]):
            out[name + SMALLEST] = smallest
    return out


def strategy_labels() -> dict[str, str]:
    """Choice key -> label, e.g. "saps_smallest" -> "SAPS (smallest diag H)"."""
    from core.selection import strategy_label

    return {key: strategy_label(entry) for key, entry in strategies().items()}


def strategy_help(keys: list[str] | None = None) -> str:
    """Help text: one "**label**: description" line per strategy choice (or the given keys)."""
    from core.selection import STRATEGIES

    names = strategy_labels()
    return "  \n".join(
        f"**{names[k]}**: {STRATEGIES[e['name']].description}"
        for k, e in strategies().items()
        if keys is None or k in keys
    )


def budgeted(key: str) -> bool:
    from core.selection import STRATEGIES

    return STRATEGIES[strategies()[key]["name"]].budgeted


def strategy_entries(keys: list[str], fraction: float) -> list[dict[str, Any]]:
    """Config strategy entries for the chosen keys at budget `fraction` (fixed masks get none)."""
    choices = strategies()
    return [{**choices[k], "fraction": fraction} if budgeted(k) else dict(choices[k]) for k in keys]


def strategy_key(entry: dict[str, Any]) -> str:
    """The choice key of a strategy config entry (inverse of `strategies`)."""
    return entry["name"] + ("" if entry.get("largest", True) else SMALLEST)


# -- methods ---------------------------------------------------------------------------------
def methods() -> dict[str, str]:
    """Unlearning methods that update a masked θ* (the retraining reference is not one): name -> label."""
    from core.unlearning import METHODS

    return {name: m.label for name, m in METHODS.items() if m.uses_mask}


def default_method(scenario: dict[str, Any]) -> str:
    """The method a scenario runs when the user picks none (`scenario` = config scenario params)."""
    from core.scenarios import SCENARIOS

    return SCENARIOS[scenario["kind"]].default_method(scenario)


def step_counts() -> dict[str, int | str]:
    """Label -> default step count of every method that takes a "steps" option ("auto" spelled
    out: so many passes over the forget samples)."""
    from core.unlearning import METHODS

    def count(d: dict) -> int | str:
        return (
            f"auto ({d['forget_epochs']} passes over the forget samples)"
            if d["steps"] == "auto"
            else d["steps"]
        )

    return {m.label: count(m.defaults) for m in METHODS.values() if m.uses_mask and "steps" in m.defaults}


def unlearning_section(method: str, steps: int, scenario: dict[str, Any]) -> dict[str, Any]:
    """The config "unlearning" section of the dashboard's settings: `method` "" leaves the choice
    to the scenario's default; `steps` 0 keeps the method's own default, and is only sent to a
    method that takes steps."""
    from core.scenarios import SCENARIOS
    from core.unlearning import METHODS

    out: dict[str, Any] = {"method": method} if method else {}
    chosen = method or (default_method(scenario) if scenario.get("kind") in SCENARIOS else None)
    if steps and chosen in METHODS and "steps" in METHODS[chosen].defaults:
        out["steps"] = steps
    return out


DOCS = Path(__file__).resolve().parents[1] / "docs"


def method_section(heading: str) -> str:
    """The section of the method reference (docs/method.md, in this repository) whose `##`
    heading starts with `heading`, as markdown (its own heading left out); "" if absent."""
    text = (DOCS / "method.md").read_text(encoding="utf-8")
    for part in text.split("\n## ")[1:]:
        title, _, body = part.partition("\n")
        if title.startswith(heading):
            return body.strip()
    return ""
