"""AppTest fixtures: fresh caches per test, a tiny trained setup, a fake finished result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")


@pytest.fixture(autouse=True)
def _fresh_caches():
    """st.cache_* and ui.cache's shared LRU outlive an AppTest: clear them around every test."""
    from ui import cache

    cache.clear()
    yield
    cache.clear()


def app(page: str | None = None, **query: str):
    """An AppTest of the dashboard, run once (optionally switched to `page` with a query)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(query)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.query_params.update(query)
        at.run()
    return at


def wait_job(at, done, timeout_s: float = 90.0):
    """Rerun the AppTest until `done(at)`. Each round waits for the session's running jobs to end
    (their threads joined: an event, not a guessed sleep), then reruns the script as the polling
    fragment would."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if done(at):
            return at
        running = at.session_state["jobs"] if "jobs" in at.session_state else {}
        for job in list(running.values()):
            job.thread.join(max(0.0, deadline - time.perf_counter()))
        at.run()
    raise AssertionError(f"job did not finish in {timeout_s} s; errors: {[e.value for e in at.error]}")


def assert_clean(at):
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
