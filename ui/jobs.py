"""Background jobs: long work in a thread, progress polled by a fragment, cooperative cancel.

A `Job` is a plain object guarded by a lock; its thread runs `fn(progress)` and never calls
Streamlit. Each browser session holds at most one job per name in
`st.session_state["jobs"]`, so a second click while it runs starts nothing.

Cancellation is cooperative: `Job.cancel()` sets an event that the job's own `progress`
callback checks; the next progress report (after a training epoch, a strategy, a deep-
evaluation seed; diag H reports none while it runs) raises `Cancelled` inside the worker
thread, and a result that arrives after Cancel is discarded. Code that records a run in the
store catches it like any exception and marks the row failed ("Cancelled: …"), so the store
never holds a "done" row with partial results.

A reload (or a second tab opened on the same URL) starts a new browser session, which would lose
the running job: every started job is therefore also kept in a process-wide table under a random
token that goes into the page URL (`?job=…`, see `url_token`); a new session whose URL carries
the token of a job adopts it (`adopt`) — progress bar, Cancel, and its result when it ends. Only
a link that carries the token finds the job, so other users of the same server never see it.

A page calls `follow(name)` once per job: while the job runs it draws the progress bar and a
Cancel button in a fragment that reruns every 0.5 s; when the job has failed it shows the
error (a cancellation as a note); when it has finished it returns the result (once).
Buttons that start work take `**guard(help)`: disabled while any job runs, and their help
then says which one. `show_estimate(seconds)` writes "about N s" (a warning above 60 s).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import SapsError

Progress = Callable[[str, float, str], None]
CANCELLED = "Cancelled"
SLOW_S = 60.0  # an estimate above this is shown as a warning
TRAIN_BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "train.json"


# What a job is called in "disabled while … runs" when its page gives no label.
LABELS = {
    "demo": "the demo",
    "train": "training",
    "curvature": "the curvature (diag H)",
    "estimators": "the estimator comparison",
    "unlearn": "the unlearning run",
    "deep_eval": "the deep evaluation",
    "sweep": "the budget sweep",
    "rerun": "the re-run",
    "inspect": "predictions",
}


class Cancelled(Exception):
    """Raised by a job's progress callback after Cancel: stops the worker at its next report."""


@dataclass
class Job:
    """Progress of one background computation (read by the page, written by the thread)."""

    name: str
    label: str = ""
    stage: str = "queued"
    fraction: float = 0.0
    message: str = "starting…"
    result: Any = None
    error: str | None = None
    done: bool = False
    cancelled: bool = False
    token: str = field(default_factory=lambda: secrets.token_hex(6))
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)
    stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, stage: str, fraction: float, message: str) -> None:
        if self.stop.is_set():
            raise Cancelled(f"{self.label or self.name} was cancelled by the user")
        with self.lock:
            self.stage, self.message = stage, message
            self.fraction = min(1.0, max(0.0, float(fraction)))

    def cancel(self) -> None:
        """Ask the worker to stop at its next progress report (returns at once)."""
        self.stop.set()
        with self.lock:
            if not self.done:
                self.message = "cancelling (stops at the next progress report)…"

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "stage": self.stage,
                "fraction": self.fraction,
                "message": self.message,
                "done": self.done,
                "error": self.error,
                "cancelled": self.cancelled,
                "seconds": (self.finished or time.perf_counter()) - self.started,
            }

    def _run(self, fn: Callable[[Progress], Any]) -> None:
        try:
            result = fn(self.progress)
        except Cancelled as e:
            self._end(None, f"{CANCELLED}: {e}", cancelled=True)
        except SapsError as e:
            self._end(None, str(e))
        except Exception as e:  # a bug must still show as a message, never kill the page
            self._end(None, f"{type(e).__name__}: {e}")
        else:
            if self.stop.is_set():  # finished after Cancel: the user asked not to see it
                self._end(
                    None, f"{CANCELLED}: {self.label or self.name} was cancelled by the user", cancelled=True
                )
            else:
                self._end(result, None)

    def _end(self, result: Any, error: str | None, *, cancelled: bool = False) -> None:
        with self.lock:
            self.result, self.error, self.done, self.cancelled = result, error, True, cancelled
            self.finished = time.perf_counter()
            if error is None:
                self.fraction, self.message = 1.0, "done"


# Every started job by token, for the session that reloads its page (see the module docstring).
# Finished jobs are dropped once a session collects them; at most KEEP are kept in all.
_BY_TOKEN: dict[str, Job] = {}
_BY_TOKEN_LOCK = threading.Lock()
KEEP = 32


def start_thread(name: str, fn: Callable[[Progress], Any], label: str = "") -> Job:
    """Start `fn(progress)` in a daemon thread (no Streamlit involved; used by tests too)."""
    job = Job(name, label or LABELS.get(name, name))
    with _BY_TOKEN_LOCK:
        _BY_TOKEN[job.token] = job
        for old in list(_BY_TOKEN)[:-KEEP]:  # the oldest first (dicts keep insertion order)
            del _BY_TOKEN[old]
    job.thread = threading.Thread(target=job._run, args=(fn,), name=f"saps-{name}", daemon=True)
    job.thread.start()
    return job


def find(token: Any) -> Job | None:
    """The job started under `token` (from a URL), or None."""
    with _BY_TOKEN_LOCK:
        return _BY_TOKEN.get(token) if isinstance(token, str) else None


def _forget(job: Job) -> None:
    with _BY_TOKEN_LOCK:
        _BY_TOKEN.pop(job.token, None)


# -- time estimates (pure) --------------------------------------------------------------------
def seconds_per_epoch(dataset: str, model: str, n_train: int, n_params: int) -> float:
    """Seconds of one training epoch, scaled by samples × parameters from the measured
    benchmarks/results/train.json row of the same data set and model, else of the same model on
    another data set (the cost per sample and parameter is the architecture's), else the slowest
    measured rate, so an unknown model is not under-estimated."""
    try:
        rows = json.loads(TRAIN_BENCHMARK.read_text())["rows"]
    except (OSError, ValueError, KeyError):
        rows = []
    rates = {
        (r["dataset"], r["model"]): r["seconds_per_epoch"] / (r["n_train"] * r["parameters"])
        for r in rows
        if r.get("n_train") and r.get("parameters")
    }
    same_model = [r for (d, m), r in rates.items() if m == model]
    rate = rates.get((dataset, model)) or max(same_model or rates.values(), default=4e-9)
    return rate * n_train * n_params


def format_estimate(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


# -- Streamlit side ---------------------------------------------------------------------------
def _jobs() -> dict[str, Job]:
    import streamlit as st

    return st.session_state.setdefault("jobs", {})


def adopt(token: Any) -> Job | None:
    """Take over the job of URL token `token` into this session (after a reload), unless the
    session already has a job of that name. Returns the adopted job or None."""
    job = find(token)
    if job is None or job.name in _jobs():
        return None
    _jobs()[job.name] = job
    return job


def url_token() -> str | None:
    """The token of this session's running job, for the URL (None when none runs)."""
    return next((j.token for j in _jobs().values() if not j.done), None)


def running(name: str | None = None) -> bool:
    """Whether this session has a job `name` (or any job) that has not finished."""
    jobs = _jobs()
    items = [jobs.get(name)] if name else list(jobs.values())
    return any(j is not None and not j.done for j in items)


def running_label() -> str | None:
    """What the session's running job is (its label), or None."""
    return next((j.label or j.name for j in _jobs().values() if not j.done), None)


def guard(help: str) -> dict[str, Any]:
    """`disabled` and `help` keyword arguments for a button that starts work: disabled while a
    job runs, and then its help says which job it waits for."""
    label = running_label()
    if label is None:
        return {"disabled": False, "help": help}
    return {
        "disabled": True,
        "help": f"{help}  \n**Disabled while {label} runs** (its progress bar has a Cancel button).",
    }


def show_estimate(seconds: float | None, what: str = "") -> None:
    """ "about N s" under a button; a warning when it will take more than a minute."""
    import streamlit as st

    if seconds is None:
        return
    text = f"{what + ': ' if what else ''}{format_estimate(seconds)} on this machine"
    if seconds > SLOW_S:
        st.warning(text + " — you can cancel it while it runs.", icon="⏳")
    else:
        st.caption(text)


def start(name: str, fn: Callable[[Progress], Any], label: str = "") -> None:
    """Start job `name` unless this session already runs one with that name (returns None).

    A started job reruns the page at once, so every button drawn before the click shows
    disabled while the job runs.
    """
    import streamlit as st

    if running(name):
        return None
    st.session_state.setdefault("failed", {}).pop(name, None)
    job = start_thread(name, fn, label)
    _jobs()[name] = job
    st.rerun()


def cancel(name: str) -> None:
    """Ask job `name` of this session to stop (no-op when it does not run)."""
    job = _jobs().get(name)
    if job is not None:
        job.cancel()


def take(name: str) -> Any:
    """The finished result of job `name` (once), or None."""
    import streamlit as st

    return st.session_state.setdefault("done", {}).pop(name, None)


def error(name: str) -> str | None:
    """The error of failed job `name` ("Cancelled: …" after Cancel), or None."""
    import streamlit as st

    return st.session_state.setdefault("failed", {}).get(name)


def _collect(name: str) -> bool:
    """Move a finished job's outcome into session state; True if it finished."""
    import streamlit as st

    job = _jobs().get(name)
    if job is None or not job.done:
        return False
    del _jobs()[name]
    _forget(job)
    if job.error is not None:
        st.session_state.setdefault("failed", {})[name] = job.error
    else:
        st.session_state.setdefault("done", {})[name] = job.result
    return True


def poll(name: str, *, interval_s: float = 0.5) -> None:
    """Progress bar and Cancel button of job `name`, refreshed every `interval_s`; reruns the
    app when done."""
    import streamlit as st

    if _collect(name):  # finished between two runs
        return
    if name not in _jobs():
        return

    @st.fragment(run_every=interval_s)
    def _progress() -> None:
        job = _jobs().get(name)
        if job is None:
            return
        if st.button(
            "Cancel",
            key=f"cancel_{name}",
            icon=":material/stop_circle:",
            help=f"Stop {job.label or name} at its next progress report; nothing half-done is kept.",
        ):
            job.cancel()
        snap = job.snapshot()
        st.progress(snap["fraction"], text=f"{snap['message']} · {snap['seconds']:.1f} s")
        st.caption(f"Other buttons are disabled while {job.label or name} runs.")
        if snap["done"]:
            _collect(name)
            st.rerun(scope="app")

    _progress()


def show_error(name: str) -> None:
    """An st.error for a failed job (its message names the problem), a note after Cancel."""
    import streamlit as st

    msg = error(name)
    if msg and msg.startswith(CANCELLED):
        text = msg.removeprefix(f"{CANCELLED}: ")
        st.info(text[:1].upper() + text[1:] + ".", icon="⏹️")
    elif msg:
        st.error(msg, icon="🚫")


def follow(name: str, *, interval_s: float = 0.5) -> Any:
    """Everything a page does with job `name`, in one call: its progress bar and Cancel button
    while it runs, its error once it failed, and its result once it finished (returned once,
    else None)."""
    poll(name, interval_s=interval_s)
    show_error(name)
    return take(name)
