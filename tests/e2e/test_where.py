"""6 · Where in a real Chromium: after the demo, the per-layer figure, the projection (and the
strategy picker that redraws it) and Compare's function-space distance render."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import button, no_exceptions, open_page, wait_idle

pytestmark = pytest.mark.e2e


def test_where_after_the_demo(page, app_url, artifacts):
    page.goto(app_url)
    wait_idle(page)
    button(page, "Run the demo").click()
    page.wait_for_url("**/Compare**", timeout=240_000)
    page.get_by_role("heading", name="5 · Compare").wait_for()
    wait_idle(page)
    distance = page.locator('[data-testid="stPlotlyChart"]', has_text="function-space distance")
    expect(distance.get_by_text("agreement with retrained").first).to_be_visible(timeout=20_000)
    expect(distance.get_by_text("KL(p_retrained ‖ p)").first).to_be_visible()

    open_page(page, "6 · Where", "6 · Where the forgetting happens")
    profile = page.locator(
        '[data-testid="stPlotlyChart"]', has_text="share of the layer's parameters selected"
    )
    expect(profile).to_be_visible(timeout=120_000)
    wait_idle(page)
    for text in ("relative weight change", "linear CKA", "conv1", "fc2", "SAPS (largest diag H) @ 2 %"):
        expect(profile.get_by_text(text).first).to_be_visible()
    expect(page.get_by_text("θ* differs most from the retrained model").first).to_be_visible()
    projection = page.locator('[data-testid="stPlotlyChart"]', has_text="forget sample (◆)")
    expect(projection).to_be_visible()
    expect(projection.get_by_text("SAPS (largest diag H) @ 2 % (θ*'s axes)").first).to_be_visible()
    expect(projection.get_by_text("retrained (own PCA").first).to_be_visible()
    no_exceptions(page)
    profile.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "where.png"))

    # another strategy for the projection: the middle panel follows
    page.locator('[data-testid="stSelectbox"]', has_text="Strategy").first.click()
    page.get_by_role("option", name="last layer").first.click()
    expect(projection.get_by_text("last layer (θ*'s axes)").first).to_be_visible(timeout=30_000)
    wait_idle(page)
    no_exceptions(page)
    projection.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "where_projection.png"))
