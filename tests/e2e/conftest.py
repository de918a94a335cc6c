"""Browser tests: a real `streamlit run app.py` server and a real Chromium (marker e2e).

Chromium is the Debian one at /usr/bin/chromium (never `playwright install`). Without it the
tests skip with the reason shown, except on CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ui.state import PAGE_END

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SAPS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _require_chromium() -> None:
    if Path(CHROMIUM).is_file() or shutil.which(CHROMIUM):
        return
    reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium); browser tests need it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " — required on CI", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, pointed at the system Chromium."""
    _require_chromium()
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A tall window: Streamlit scrolls inside its own container, so screenshots show the viewport."""
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1900}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> float:
    """Seconds until GET url/_stcore/health answers ok (fails if the server dies)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not become healthy within {timeout_s} s")


def start_server(store: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port of 127.0.0.1 with its own run store."""
    port = _free_port()
    env = {**os.environ, "SAPS_STORE": str(store), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, browser_type_launch_args):
    """Base URL of a running dashboard (one server for the whole e2e session)."""
    tmp = tmp_path_factory.mktemp("e2e")
    proc, url = start_server(tmp / "store", tmp / "streamlit.log")
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the app has rendered and no script run is in progress."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.get_by_text(PAGE_END).wait_for(timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"]')"
        " && !document.querySelector('[data-testid=\"stSkeleton\"]')",
        timeout=timeout_ms,
    )
    page.wait_for_timeout(300)


def no_exceptions(page) -> None:
    count = page.locator('[data-testid="stException"]').count()
    assert count == 0, page.locator('[data-testid="stException"]').first.inner_text()


def button(page, text: str):
    """The visible Streamlit button labelled `text`."""
    return page.locator('button[data-testid^="stBaseButton"]:visible', has_text=text).first


def open_page(page, title: str, heading: str | None = None) -> None:
    """Go to a page through the sidebar menu (same browser session, unlike page.goto)."""
    page.locator('[data-testid="stSidebar"] a', has_text=title).first.click()
    page.get_by_role("heading", name=heading or title).first.wait_for(timeout=60_000)
    wait_idle(page)
