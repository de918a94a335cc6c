"""The dashboard in a real Chromium: home, the demo, every page, the threshold slider."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import button, no_exceptions, open_page, wait_idle

pytestmark = pytest.mark.e2e

PAGES = ["1 · Forget set", "2 · Train", "3 · Curvature", "4 · Unlearn", "5 · Compare"]


def shot(page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"))


def test_home_renders(page, app_url, artifacts):
    page.goto(app_url)
    wait_idle(page)
    expect(button(page, "Run the demo")).to_be_visible()
    assert page.get_by_text("Quick choice").is_visible()
    no_exceptions(page)
    shot(page, artifacts, "home")


def test_demo_then_every_page_and_the_slider(page, app_url, artifacts):
    page.goto(f"{app_url}/?deep_models=3")  # a small deep evaluation keeps CI time sane (default M = 16)
    wait_idle(page)
    button(page, "Run the demo").click()
    expect(page.locator('[data-testid="stProgress"]').first).to_be_visible(timeout=15_000)
    shot(page, artifacts, "home_progress")
    page.wait_for_url("**/Compare**", timeout=240_000)
    page.get_by_role("heading", name="5 · Compare").wait_for()
    wait_idle(page)
    for title in (
        "utility vs forgetting",
        "full cost per strategy",
        "amortized cost",
        "relearning attack",
        "poison fit and membership",
    ):
        expect(page.get_by_text(title).first).to_be_visible(timeout=20_000)
    # full cost: selection stacked under the update, retraining as the dashed reference
    expect(page.get_by_text("selection (hatched)").first).to_be_visible()
    expect(page.get_by_text("retraining:").first).to_be_visible()
    # relearning curves for θ*, the retrained model and the strategies
    relearn = page.locator('[data-testid="stPlotlyChart"]', has_text="relearning attack")
    expect(relearn.get_by_text("original θ*").first).to_be_visible()
    expect(relearn.get_by_text("retrained").first).to_be_visible()
    # the two AUCs under their own names, with what each measures
    privacy = page.locator('[data-testid="stPlotlyChart"]', has_text="poison fit and membership")
    expect(privacy.get_by_text("poison fit AUC").first).to_be_visible()
    expect(privacy.get_by_text("membership AUC").first).to_be_visible()
    expect(page.get_by_text("lower = forgotten, retrained ≈ 0").first).to_be_visible()
    no_exceptions(page)
    shot(page, artifacts, "compare")

    # deep evaluation: a background job with progress, then forget quality per strategy vs θ*
    button(page, "Deep evaluation").click()
    expect(page.locator('[data-testid="stProgress"]').first).to_be_visible(timeout=15_000)
    expect(page.get_by_text("forget quality, M = 3").first).to_be_visible(timeout=420_000)
    wait_idle(page)
    quality = page.locator('[data-testid="stPlotlyChart"]', has_text="forget quality, M = 3")
    expect(quality.get_by_text("original θ*").first).to_be_visible()
    no_exceptions(page)
    quality.scroll_into_view_if_needed()
    shot(page, artifacts, "compare_deep_evaluation")

    for title in PAGES:
        open_page(page, title)
        if title == "3 · Curvature":  # diag H is computed in the background on the first visit
            expect(page.get_by_text("selected parameters")).to_be_visible(timeout=60_000)
            wait_idle(page)
        no_exceptions(page)
        shot(page, artifacts, title.split(" · ")[1].lower().replace(" ", "_"))

    # the threshold slider: one step right -> more parameters selected, URL updated
    open_page(page, "3 · Curvature")
    count = page.locator('[data-testid="stMetricValue"]').first
    expect(count).to_have_text("274", timeout=60_000)  # 2 % of 13,706
    page.locator('[data-testid="stSlider"] input[type="range"]').first.focus()
    page.keyboard.press("ArrowRight")
    expect(count).to_have_text("685", timeout=10_000)  # 5 %
    page.wait_for_url("**frac=0.05**", timeout=10_000)
    # the strategy-overlap panel follows the slider too (it lives in the slider's fragment)
    expect(page.get_by_text("of their masks at 5.0%")).to_be_visible(timeout=10_000)
    no_exceptions(page)
    shot(page, artifacts, "curvature_slider")


def test_shared_link_reproduces_the_view(page, app_url):
    page.goto(f"{app_url}/Unlearn?frac=0.1&method=second_order&strategies=saps,all")
    wait_idle(page)
    expect(page.get_by_text("10.0%").first).to_be_visible()
    expect(page.get_by_text("Second order (solved)").first).to_be_visible()  # the registry's label
    assert "frac=0.1" in page.url and "method=second_order" in page.url
    no_exceptions(page)
