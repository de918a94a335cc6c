"""Links that reproduce a view, in a real Chromium: the demo, the address it leaves, and the
same address opened in a new browser context (no session, no cookies) showing the same figures."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import button, no_exceptions, open_page, wait_idle

pytestmark = pytest.mark.e2e

# Every plotly chart on the page: its title and its traces' names and coordinates.
FIGURES_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => JSON.stringify({
  title: g.layout && g.layout.title ? g.layout.title.text : null,
  traces: (g.data || []).map(t => [t.name || null, t.x || null, t.y || null]),
})).sort()"""
VIEWPORT = {"width": 1400, "height": 1900}


def figures(page) -> list[str]:
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=60_000)
    wait_idle(page)
    return page.evaluate(FIGURES_JS)


def fresh(browser, url: str):
    """`url` in a new browser context: an empty Streamlit session, as on another machine."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url)
    wait_idle(page)
    return context, page


def test_cancel_stops_the_demo_and_keeps_nothing(browser, app_url):
    ctx, page = fresh(browser, app_url)
    button(page, "Run the demo").click()
    expect(page.get_by_text("Other buttons are disabled while").first).to_be_visible(timeout=15_000)
    expect(button(page, "Run the demo")).to_be_disabled()
    button(page, "Cancel").click()
    expect(page.get_by_text("cancelled by the user").first).to_be_visible(timeout=60_000)
    expect(button(page, "Run the demo")).to_be_enabled()
    assert "/Compare" not in page.url
    no_exceptions(page)
    ctx.close()


def test_demo_link_reproduces_compare_and_unlearn_in_a_new_browser(browser, app_url, artifacts):
    first_ctx = browser.new_context(viewport=VIEWPORT)
    page = first_ctx.new_page()
    page.goto(app_url)
    wait_idle(page)
    button(page, "Run the demo").click()
    page.wait_for_url(re.compile(r"/Compare\?(.*&)?run=\d+"), timeout=240_000)
    compare_url = page.url
    run_id = re.search(r"run=(\d+)", compare_url).group(1)
    expect(page.get_by_text(f"Run #{run_id}").first).to_be_visible(timeout=30_000)
    before = figures(page)
    assert len(before) >= 5
    no_exceptions(page)

    ctx, other = fresh(browser, compare_url)
    expect(other.get_by_text(f"Run #{run_id}").first).to_be_visible(timeout=30_000)
    assert figures(other) == before
    no_exceptions(other)
    other.screenshot(path=str(artifacts / "link_compare_new_browser.png"))
    ctx.close()

    # the three downloads one after the other: each arrives, none waits on a rerun
    for label, name in (
        ("Results as CSV", "saps_results.csv"),
        ("Results as JSON", "saps_result.json"),
        ("Figures as HTML", "saps_figures.html"),
    ):
        with page.expect_download(timeout=20_000) as download:
            button(page, label).click()
        assert download.value.suggested_filename == name and download.value.failure() is None
    html = open(download.value.path(), encoding="utf-8").read()
    assert 'id="saps-tradeoff"' in html and 'id="saps-relearn"' in html

    open_page(page, "4 · Unlearn")
    page.wait_for_url(re.compile(rf"/Unlearn\?(.*&)?run={run_id}"), timeout=30_000)
    unlearn_url, unlearn_figures = page.url, figures(page)
    ctx, other = fresh(browser, unlearn_url)
    expect(other.get_by_text(f"Run #{run_id}").first).to_be_visible(timeout=30_000)
    assert figures(other) == unlearn_figures
    no_exceptions(other)
    other.screenshot(path=str(artifacts / "link_unlearn_new_browser.png"))
    ctx.close()

    # the sidebar summary follows the Curvature page's budget slider (which lives in a fragment)
    open_page(page, "3 · Curvature")
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("budget 2.0%")).to_be_visible(timeout=60_000)
    expect(page.locator('[data-testid="stMetricValue"]').first).to_be_visible(timeout=60_000)
    page.locator('[data-testid="stSlider"] input[type="range"]').first.focus()
    page.keyboard.press("ArrowRight")
    expect(sidebar.get_by_text("budget 5.0%")).to_be_visible(timeout=10_000)
    no_exceptions(page)
    first_ctx.close()


def test_unknown_run_in_a_link_is_a_message_not_a_traceback(browser, app_url):
    ctx, page = fresh(browser, f"{app_url}/Compare?run=987654")
    expect(page.get_by_text("Run 987654 cannot be shown").first).to_be_visible()
    expect(page.get_by_text("Run history").first).to_be_visible()
    no_exceptions(page)
    ctx.close()
