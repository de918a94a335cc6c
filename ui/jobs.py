"""Background jobs: long work in a thread, progress polled by a fragment.

A `Job` is a plain object guarded by a lock; its thread runs `fn(progress)` and never calls
Streamlit. Each browser session holds at most one job per name in
`st.session_state["jobs"]`, so a second click while it runs starts nothing.

A page calls `follow(name)` once per job: while the job runs it draws the progress bar in a
fragment that reruns every 0.5 s; when the job has failed it shows the error; when it has
finished it returns the result (once) so the page can store it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import SapsError

Progress = Callable[[str, float, str], None]


@dataclass
class Job:
    """Progress of one background computation (read by the page, written by the thread)."""

    name: str
    stage: str = "queued"
    fraction: float = 0.0
    message: str = "starting…"
    result: Any = None
    error: str | None = None
    done: bool = False
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)

    def progress(self, stage: str, fraction: float, message: str) -> None:
        with self.lock:
            self.stage, self.message = stage, message
            self.fraction = min(1.0, max(0.0, float(fraction)))

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "stage": self.stage,
                "fraction": self.fraction,
                "message": self.message,
                "done": self.done,
                "error": self.error,
                "seconds": (self.finished or time.perf_counter()) - self.started,
            }

    def _run(self, fn: Callable[[Progress], Any]) -> None:
        try:
            result = fn(self.progress)
        except SapsError as e:
            self._end(None, str(e))
        except Exception as e:  # a bug must still show as a message, never kill the page
            self._end(None, f"{type(e).__name__}: {e}")
        else:
            self._end(result, None)

    def _end(self, result: Any, error: str | None) -> None:
        with self.lock:
            self.result, self.error, self.done = result, error, True
            self.finished = time.perf_counter()
            if error is None:
                self.fraction, self.message = 1.0, "done"


def start_thread(name: str, fn: Callable[[Progress], Any]) -> Job:
    """Start `fn(progress)` in a daemon thread (no Streamlit involved; used by tests too)."""
    job = Job(name)
    job.thread = threading.Thread(target=job._run, args=(fn,), name=f"saps-{name}", daemon=True)
    job.thread.start()
    return job


# -- Streamlit side ---------------------------------------------------------------------------
def _jobs() -> dict[str, Job]:
    import streamlit as st

    return st.session_state.setdefault("jobs", {})


def running(name: str | None = None) -> bool:
    """Whether this session has a job `name` (or any job) that has not finished."""
    jobs = _jobs()
    items = [jobs.get(name)] if name else list(jobs.values())
    return any(j is not None and not j.done for j in items)


def start(name: str, fn: Callable[[Progress], Any]) -> None:
    """Start job `name` unless this session already runs one with that name (returns None).

    A started job reruns the page at once, so every button drawn before the click shows
    disabled while the job runs.
    """
    import streamlit as st

    if running(name):
        return None
    st.session_state.setdefault("failed", {}).pop(name, None)
    job = start_thread(name, fn)
    _jobs()[name] = job
    st.rerun()


def take(name: str) -> Any:
    """The finished result of job `name` (once), or None."""
    import streamlit as st

    return st.session_state.setdefault("done", {}).pop(name, None)


def error(name: str) -> str | None:
    import streamlit as st

    return st.session_state.setdefault("failed", {}).get(name)


def _collect(name: str) -> bool:
    """Move a finished job's outcome into session state; True if it finished."""
    import streamlit as st

    job = _jobs().get(name)
    if job is None or not job.done:
        return False
    del _jobs()[name]
    if job.error is not None:
        st.session_state.setdefault("failed", {})[name] = job.error
    else:
        st.session_state.setdefault("done", {})[name] = job.result
    return True


def poll(name: str, *, interval_s: float = 0.5) -> None:
    """Progress bar of job `name`, refreshed every `interval_s`; reruns the app when done."""
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
        snap = job.snapshot()
        st.progress(snap["fraction"], text=f"{snap['message']} · {snap['seconds']:.1f} s")
        if snap["done"]:
            _collect(name)
            st.rerun(scope="app")

    _progress()


def show_error(name: str) -> None:
    """An st.error for a failed job (its message names the problem), if any."""
    import streamlit as st

    msg = error(name)
    if msg:
        st.error(msg, icon="🚫")


def follow(name: str, *, interval_s: float = 0.5) -> Any:
    """Everything a page does with job `name`, in one call: its progress bar while it runs,
    its error once it failed, and its result once it finished (returned once, else None)."""
    poll(name, interval_s=interval_s)
    show_error(name)
    return take(name)
