"""The Forget-set sample picker in a real Chromium: a click on a square and a box around
squares change the chosen samples (Streamlit's real selection event, no KeyError)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import no_exceptions, wait_idle


def _chosen(page) -> int:
    text = page.get_by_text(re.compile(r"^\d+ samples chosen")).first.inner_text()
    return int(text.split()[0])


def _square_centre(page, i: int) -> tuple[float, float]:
    box = page.locator(".st-key-picker .scatterlayer .point").nth(i).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_click_and_box_select_in_the_sample_picker(page, app_url):
    page.goto(f"{app_url}/Forget_set?size=10")
    wait_idle(page)
    picker = page.locator(".st-key-picker")
    picker.scroll_into_view_if_needed()
    expect(picker.locator(".scatterlayer .point").first).to_be_attached(timeout=30_000)
    before = _chosen(page)

    # a click on square 3 toggles sample 3 (added, or dropped when it was in D_f)
    x, y = _square_centre(page, 3)
    page.mouse.move(x, y)
    page.mouse.click(x, y)
    expect(page.get_by_text(re.compile(r"^\d+ samples chosen"))).not_to_have_text(
        re.compile(rf"^{before} samples"), timeout=15_000
    )
    wait_idle(page)
    after_click = _chosen(page)
    assert abs(after_click - before) == 1
    no_exceptions(page)

    # a box over squares 40..45 of the second row adds them
    picker.locator(".modebar-btn[data-val='select']").first.click(force=True)
    x0, y0 = _square_centre(page, 40)
    x1, y1 = _square_centre(page, 45)
    page.mouse.move(x0 - 4, y0 - 4)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y1 + 2, steps=5)
    page.mouse.move(x1 + 4, y1 + 4, steps=5)
    page.mouse.up()
    expect(page.get_by_text(re.compile(r"^\d+ samples chosen"))).not_to_have_text(
        re.compile(rf"^{after_click} samples"), timeout=15_000
    )
    wait_idle(page)
    assert _chosen(page) > after_click
    no_exceptions(page)
