"""Session state: the user's settings, their URL round-trip, and the shared sidebar.

Every page calls `init(title)` first. Settings live in `st.session_state["settings"]` (one
dict per browser session, so two users never see each other's choices) and are mirrored
into the query string after every run, so a copied link reproduces the view:
`/Curvature?frac=0.05&curv=hutchinson&largest=0`. Only values that differ from the defaults
appear in the URL.

Result pages (Unlearn, Compare) carry the run they show as `run=<id>`: `shown_result(store)`
loads it from the store when the session does not hold it (a link opened in a new browser),
and names an unknown id in an st.error instead of failing.

Widgets are bound with `bind(...)`: their key is `w_<name>_<page>`, seeded from the settings when
the widget first appears on a page (Streamlit forgets widget state of pages not shown), and
their value is copied back into the settings on every run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from core import config as core_config
from core.store import default_path
from ui import choices, jobs

# Budget choices of the log-scale fraction slider: 0.1 % … 100 %.
FRACTIONS: list[float] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
# The demo's strategy choices (keys of ui.choices.strategies()).
DEMO_STRATEGIES = ["saps", "saps_smallest", "random", "gradient", "last_layer", "all"]

# name -> default; the type of the default decides how the URL value is parsed.
DEFAULTS: dict[str, Any] = {
    "dataset": core_config.DEFAULTS["dataset"],
    "root": "",
    "model": core_config.DEFAULTS["model"],
    "seed": core_config.DEFAULTS["seed"],
    "scenario": core_config.DEFAULTS["scenario"]["kind"],
    "size": core_config.DEFAULTS["scenario"]["size"],
    "target": core_config.DEFAULTS["scenario"]["target"],
    "patch": 0,  # 0 = the scenario's default (max(3, H // 8))
    "forget_class": 0,
    "flip_to": -1,  # label flip: the class every flipped label becomes (−1: s → C−1−s)
    "flip_source": -1,  # label flip: only this class's labels are flipped (−1: any class)
    "corruption": "backdoor",
    "indices": [],
    "epochs": core_config.DEFAULTS["train"]["epochs"],
    "curv": core_config.DEFAULTS["curvature"]["method"],
    "curv_data": core_config.DEFAULTS["curvature"]["data"],
    "frac": 0.02,
    "largest": True,
    "strategies": list(DEMO_STRATEGIES),
    "method": "",  # "" = the scenario's default method (ui.choices.default_method)
    "steps": 0,  # 0 = the method's own default
    "deep_models": 16,  # models M per side of the deep evaluation (forget quality)
    "run": 0,  # run id shown on Unlearn / Compare (0 = none yet; set when a result is shown)
    "inspect": 0,  # Unlearn: index of the strategy row whose predictions are shown
}
# Settings that never go to the URL (a server path is local to the machine).
NOT_IN_URL = {"root"}
# An uploaded .npz (saved as <store>/uploads/<digest>.npz by ui.upload) goes into the URL as its
# digest, `upload=<digest>`, not as a path: a link then finds the same file in the server's store.
UPLOAD_FILE = re.compile(r"(?:^|[\\/])uploads[\\/]([0-9a-f]{16})\.npz$")

PAGES = [
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Forget_set.py", "1 · Forget set", ":material/target:"),
    ("pages/2_Train.py", "2 · Train", ":material/model_training:"),
    ("pages/3_Curvature.py", "3 · Curvature", ":material/landscape:"),
    ("pages/4_Unlearn.py", "4 · Unlearn", ":material/cleaning_services:"),
    ("pages/5_Compare.py", "5 · Compare", ":material/leaderboard:"),
    ("pages/6_Where.py", "6 · Where", ":material/layers:"),
]
# Last element of every page (also what browser tests wait for).
PAGE_END = "Settings live in this page's URL: share the link to reproduce this view."


# Narrow windows: rows of charts wrap to one chart per line instead of squeezing (a chart needs
# ~400 px), other rows (metrics, widgets) at ~150 px a column, wide formulas scroll, not clip.
LAYOUT_CSS = """<style>
[data-testid="stHorizontalBlock"]:has([data-testid="stPlotlyChart"]) { flex-wrap: wrap; }
[data-testid="stHorizontalBlock"]:has([data-testid="stPlotlyChart"]) > [data-testid="stColumn"] {
  min-width: min(100%, 400px); }
[data-testid="stHorizontalBlock"] { flex-wrap: wrap; }
[data-testid="stHorizontalBlock"] > [data-testid="stColumn"] { min-width: min(100%, 150px); }
.katex-display { overflow-x: auto; overflow-y: hidden; padding-bottom: 2px; }
@media (max-width: 1100px) { .katex-display { font-size: 0.88em; } }
</style>"""


# -- parsing (pure) -------------------------------------------------------------------------
def parse_value(name: str, raw: str | list[str]) -> Any:
    """URL text -> a setting value of the default's type; ValueError if it does not parse."""
    default = DEFAULTS[name]
    text = raw[-1] if isinstance(raw, list) else raw
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{name}: expected 1/0, got {text!r}")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(f"{name}: not a finite number")
        return v
    if isinstance(default, list):
        items = [t for t in text.split(",") if t != ""]
        if name == "indices":
            return [int(t) for t in items]
        return items
    return text


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def from_query(query: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Settings from a query-string dict: (defaults updated, problems for unparsable keys)."""
    settings, problems = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}, []
    for name, raw in query.items():
        if name not in DEFAULTS or name in NOT_IN_URL:
            continue
        try:
            settings[name] = parse_value(name, raw)
        except ValueError as e:
            problems.append(f"URL parameter {name}={raw!r} ignored ({e})")
    digest = query.get("upload")
    digest = digest[-1] if isinstance(digest, list) else digest
    if digest is not None:
        path = Path(default_path()) / "uploads" / f"{digest}.npz"
        if re.fullmatch(r"[0-9a-f]{16}", str(digest)) and path.is_file():
            settings["root"] = str(path)
        else:
            problems.append(
                f"URL parameter upload={digest!r} ignored (no such uploaded file in this server's "
                "store: upload it again on page 1)"
            )
    settings["frac"] = snap_fraction(settings["frac"])
    offered = choices.strategies()
    settings["strategies"] = [s for s in settings["strategies"] if s in offered]
    return settings, problems


def to_query(settings: dict[str, Any]) -> dict[str, str]:
    """The settings that differ from the defaults, as URL text (an uploaded .npz as its digest)."""
    out = {
        k: format_value(v)
        for k, v in settings.items()
        if k in DEFAULTS and k not in NOT_IN_URL and v != DEFAULTS[k]
    }
    found = UPLOAD_FILE.search(str(settings.get("root") or ""))
    if settings.get("dataset") == "npz" and found:
        out["upload"] = found.group(1)
    return out


def snap_fraction(value: float) -> float:
    """The slider option closest to `value` on a log scale."""
    if not isinstance(value, (int, float)) or value <= 0:
        return DEFAULTS["frac"]
    return min(FRACTIONS, key=lambda f: abs(math.log(f) - math.log(value)))


def scenario_params(s: dict[str, Any]) -> dict[str, Any]:
    kind = s["scenario"]
    if kind == "backdoor":
        sc = {"kind": kind, "size": s["size"], "target": s["target"]}
        if s["patch"]:
            sc["patch"] = s["patch"]
        return sc
    if kind == "label_flip":
        sc = {"kind": kind, "size": s["size"]}
        if s["flip_source"] >= 0:
            sc["source"] = s["flip_source"]
        if s["flip_to"] >= 0:
            sc["to"] = s["flip_to"]
        return sc
    if kind == "random_samples":
        return {"kind": kind, "size": s["size"]}
    if kind == "class":
        return {"kind": kind, "class": s["forget_class"]}
    sc = {"kind": "indices", "indices": list(s["indices"]), "corruption": s["corruption"]}
    if s["corruption"] == "label" and s["flip_to"] >= 0:
        sc["to"] = s["flip_to"]
    if s["corruption"] == "backdoor":
        sc["target"] = s["target"]
        if s["patch"]:
            sc["patch"] = s["patch"]
    return sc


def build_config(s: dict[str, Any], *, strategies: bool = True) -> dict[str, Any]:
    """The core run config of settings `s` (not yet normalized; core.config.normalize checks it)."""
    cfg: dict[str, Any] = {
        "dataset": s["dataset"],
        "root": s["root"] or None,
        "model": s["model"],
        "seed": s["seed"],
        "device": "auto",
        "scenario": scenario_params(s),
        "train": {"epochs": s["epochs"]},
        "curvature": {"method": s["curv"], "data": s["curv_data"]},
        "strategies": choices.strategy_entries(s["strategies"], s["frac"]) if strategies else [],
        "unlearning": choices.unlearning_section(s["method"], s["steps"], scenario_params(s)),
        "retrain": True,
    }
    return cfg


def settings_from_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Best-effort inverse of build_config (for "load" / "re-run" of a stored run)."""
    s: dict[str, Any] = {}
    for k in ("dataset", "model", "seed"):
        if k in cfg:
            s[k] = cfg[k]
    s["root"] = cfg.get("root") or ""
    sc = dict(cfg.get("scenario") or {})
    if sc:
        s["scenario"] = sc.get("kind", "backdoor")
        for src, dst in (
            ("size", "size"),
            ("target", "target"),
            ("patch", "patch"),
            ("class", "forget_class"),
            ("to", "flip_to"),
            ("source", "flip_source"),
            ("corruption", "corruption"),
        ):
            if isinstance(sc.get(src), (int, str)):
                s[dst] = sc[src]
        if isinstance(sc.get("indices"), list):
            s["indices"] = list(sc["indices"])
    if "train" in cfg:
        s["epochs"] = cfg["train"].get("epochs", DEFAULTS["epochs"])
    if "curvature" in cfg:
        s["curv"] = cfg["curvature"].get("method", DEFAULTS["curv"])
        s["curv_data"] = cfg["curvature"].get("data", DEFAULTS["curv_data"])
    if "unlearning" in cfg:
        s["method"] = cfg["unlearning"].get("method", DEFAULTS["method"])
        steps = cfg["unlearning"].get("steps", DEFAULTS["steps"])
        s["steps"] = steps if isinstance(steps, int) else 0  # "auto": the method's default
    names, fracs = [], []
    offered = choices.strategies()
    for st_ in cfg.get("strategies") or []:
        key = choices.strategy_key(st_)
        if key in offered and key not in names:
            names.append(key)
        if st_.get("fraction") is not None:
            fracs.append(st_["fraction"])
    if names:
        s["strategies"] = names
    if fracs:
        s["frac"] = snap_fraction(fracs[0])
    return s


# -- Streamlit side ---------------------------------------------------------------------------
def init(title: str, icon: str = ":material/cleaning_services:") -> dict[str, Any]:
    """Page config, settings (from the URL on a session's first run), sidebar. Returns settings."""
    st.set_page_config(page_title=f"{title} · SAPS workbench", page_icon=icon, layout="wide")
    # Widget keys are per page: the same key on two pages would carry a stale widget value over.
    st.session_state["_page"] = page_slug(title)
    if "settings" not in st.session_state:
        settings, problems = from_query(dict(st.query_params.to_dict()))
        # st.query_params.to_dict keeps only the last value of repeated keys; fine for us.
        st.session_state["settings"] = settings
        st.session_state["url_problems"] = problems
        jobs.adopt(st.query_params.get("job"))  # a reload while a job runs: follow it again
    st.html(LAYOUT_CSS)
    for problem in st.session_state.get("url_problems", []):
        st.warning(problem)
    st.session_state["url_problems"] = []
    sidebar()
    return st.session_state["settings"]


def shown_result(store: Any) -> dict | None:
    """The result a result page shows: the stored run named by setting "run" when the session
    does not hold it (a shared link; the run's settings fill in what the link does not name),
    else the session's latest
    result, whose id then goes to the URL. An id the store does not know is an st.error naming
    it and how to pick a stored run; the page then shows no result (never another run's)."""
    from ui.analysis import tables

    s = settings()
    result = st.session_state.get("result")
    if s["run"] and (result or {}).get("run_id") != s["run"]:
        loaded, problem = tables.stored_result(store, s["run"])
        if loaded is None:
            st.error(
                f"Run {s['run']} cannot be shown: {problem}. Pick a stored run under **Run history** "
                "on 5 · Compare and press Load, or press **Run the demo** on the home page.",
                icon="🔗",
            )
            return None
        st.session_state["result"] = result = loaded
        given = set(st.query_params.to_dict())  # what the link says explicitly wins
        taken = {k: v for k, v in settings_from_config(loaded.get("config") or {}).items() if k not in given}
        update(**taken, run=int(s["run"]))
    elif result and result.get("run_id") and s["run"] != result["run_id"]:
        s["run"] = int(result["run_id"])
    return result


def page_slug(title: str) -> str:
    return title.lower().replace(" ", "_")


def widget_key(name: str) -> str:
    """The key of the widget bound to setting `name` on the current page."""
    return f"w_{name}_{st.session_state.get('_page', 'home')}"


def settings() -> dict[str, Any]:
    return st.session_state["settings"]


def update(**values: Any) -> None:
    """Change settings from code (load a run, pick samples); bound widgets follow."""
    s = settings()
    for k, v in values.items():
        s[k] = v
        for key in [key for key in st.session_state if str(key).startswith(f"w_{k}_")]:
            del st.session_state[key]


def bind(
    widget: Callable[..., Any],
    name: str,
    label: str,
    *,
    to_widget: Callable | None = None,
    from_widget: Callable | None = None,
    **kwargs: Any,
) -> Any:
    """Draw `widget(label, key="w_<name>_<page>", **kwargs)` bound to setting `name`; returns the value."""
    key = widget_key(name)
    s = settings()
    if key not in st.session_state:
        st.session_state[key] = to_widget(s[name]) if to_widget else s[name]
    value = widget(label, key=key, **kwargs)
    s[name] = from_widget(value) if from_widget else value
    return s[name]


def budget_slider(help: str) -> float:
    """The log-scale budget slider (FRACTIONS), bound to setting "frac"; returns the fraction."""
    return bind(
        st.select_slider,
        "frac",
        "Budget: fraction of parameters updated",
        options=FRACTIONS,
        format_func=lambda f: f"{f:.1%}",
        help=help,
    )


def choose(name: str, label: str, registry: str, *, note: str = "", **kwargs: Any) -> Any:
    """A selectbox over a core registry ("datasets", "models", "scenarios", "estimators"), bound
    to setting `name`: options, labels and help (each entry's description, then `note`) come
    from the registry."""
    names = choices.labels(registry)
    text = choices.describe(registry) + (f"  \n{note}" if note else "")
    return bind(
        st.selectbox,
        name,
        label,
        options=list(names),
        format_func=lambda n: names.get(n, n),
        help=text,
        **kwargs,
    )


def sync_query_only() -> None:
    """Mirror the settings into the query string and the sidebar summary (also usable inside a
    fragment: a slider there updates both)."""
    box = st.session_state.get("_summary_box")
    if box is not None:
        box.caption(summary(settings()))
    wanted = to_query(settings())
    token = jobs.url_token()
    if token is not None:  # a reload finds the running job again (ui.jobs.adopt)
        wanted["job"] = token
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def sync_url() -> None:
    """Mirror the settings into the query string and end the page (call last on every page)."""
    sync_query_only()
    st.caption(PAGE_END)


def config(*, strategies: bool = True) -> dict[str, Any]:
    return build_config(settings(), strategies=strategies)


def sidebar() -> None:
    """The menu (our labels and icons) and a summary of the current choices."""
    with st.sidebar:
        st.markdown("### SAPS workbench")
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon)
        st.divider()
        # filled again by sync_url at the end of the page, after every widget wrote its setting
        box = st.empty()
        box.caption(summary(settings()))
        st.session_state["_summary_box"] = box


def summary(s: dict[str, Any]) -> str:
    """The sidebar's one-paragraph summary of the current choices (registry labels)."""
    methods, estimators = choices.methods(), choices.labels("estimators")
    name = s["method"] or choices.default_method(scenario_params(s))
    method = methods.get(name, name) + ("" if s["method"] else " (scenario default)")
    return (
        f"**{s['dataset']}** · {s['model']} · {s['scenario']} · seed {s['seed']}  \n"
        f"budget {s['frac']:.1%} ({'largest' if s['largest'] else 'smallest'}) · "
        f"{estimators.get(s['curv'], s['curv'])} · {method}"
    )


def checked_config(*, strategies: bool = True, need_strategies: bool = False) -> dict[str, Any] | None:
    """The normalized config with its data and scenario built, or None after an st.error
    naming the problem (bad field, missing data files, empty forget set, no strategy)."""
    from core.errors import ConfigError, SapsError
    from ui import cache

    try:
        cfg = core_config.normalize(config(strategies=strategies))
        if need_strategies and not cfg["strategies"]:
            raise ConfigError("strategies", "choose at least one strategy")
        cache.prepared(cfg)
    except SapsError as e:
        st.error(f"{e}", icon="🚫")
        return None
    return cfg


def config_key_short(cfg: dict[str, Any]) -> str:
    """A short hash of the data side of a config (widget keys that must reset when it changes)."""
    from core.store import config_key

    return config_key({k: cfg.get(k) for k in ("dataset", "root", "seed", "scenario")})[:10]
