"""UI timings in a real Chromium: server start to first paint, "Run the demo" to the comparison
page (cold store, then warm), and slider release to the updated chart on page 3.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ui.py [--out benchmarks/results/ui.json]

Targets (digits, 2 CPU cores): demo ≤ 20 s, slider ≤ 0.5 s. Prints and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.e2e.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    button,
    open_page,
    start_server,
    stop_server,
    wait_healthy,
    wait_idle,
)
from ui.state import PAGE_END  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/ui.json"))
    ap.add_argument("--slider-moves", type=int, default=6)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "omp_num_threads": os.environ["OMP_NUM_THREADS"],
        }
    }
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1900})
        t0 = time.perf_counter()
        proc, url = start_server(Path(tmp) / "store", Path(tmp) / "streamlit.log")
        try:
            out["server_healthy_s"] = wait_healthy(url, proc)
            page.goto(url)
            page.get_by_text(PAGE_END).wait_for(timeout=60_000)
            out["server_start_to_first_paint_s"] = time.perf_counter() - t0
            wait_idle(page)

            for label in ("demo_cold_s", "demo_warm_s"):  # warm: trained models come from the store
                if label == "demo_warm_s":
                    open_page(page, "Home", heading="Quick choice")
                t = time.perf_counter()
                button(page, "Run the demo").click()
                page.wait_for_url("**/Compare**", timeout=300_000)
                page.get_by_text("utility vs forgetting").first.wait_for(timeout=60_000)
                out[label] = time.perf_counter() - t
                wait_idle(page)

            open_page(page, "3 · Curvature")
            count = page.locator('[data-testid="stMetricValue"]').first
            count.wait_for(timeout=60_000)
            wait_idle(page)
            slider = page.locator('[data-testid="stSlider"] input[type="range"]').first
            times = []
            for i in range(args.slider_moves):
                before = count.inner_text()
                slider.focus()
                t = time.perf_counter()
                page.keyboard.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
                page.wait_for_function(
                    "([b]) => { const m = document.querySelector('[data-testid=\"stMetricValue\"]');"
                    " const h = [...document.querySelectorAll('.annotation-text')].map(e => e.textContent).join(' ');"
                    " return m && m.textContent.trim() !== b && h.includes(m.textContent.trim() + ' selected'); }",
                    arg=[before],
                    timeout=10_000,
                )
                times.append(time.perf_counter() - t)
                page.wait_for_timeout(300)
            out["slider_to_updated_chart_s"] = {
                "median": statistics.median(times),
                "max": max(times),
                "all": times,
            }
        finally:
            stop_server(proc)
            browser.close()
    out["targets"] = {"demo_s": 20.0, "slider_s": 0.5}
    out["load_average_1min_after"] = os.getloadavg()[0]  # other processes on the 2 cores skew timings
    text = json.dumps(out, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
