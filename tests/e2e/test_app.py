"""The dashboard in a real Chromium: home, the demo, every page, the threshold slider."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import button, no_exceptions, wait_idle

pytestmark = pytest.mark.e2e


def test_home_renders(page, app_url, artifacts):
    page.goto(app_url)
    wait_idle(page)
    expect(button(page, "Run the demo")).to_be_visible()
    assert page.get_by_text("Quick choice").is_visible()
    no_exceptions(page)
    page.screenshot(path=str(artifacts / "home.png"), full_page=False)
