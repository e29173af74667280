"""The JS client's unit tests (clients/js/test/), run in headless Chromium."""

from __future__ import annotations

from browser import chromium_fixture, site_fixture  # noqa: F401


def test_unit_tests_pass_in_chromium(chromium, site):
    page = chromium.open(site.url("/sei/test/index.html"))
    result = chromium.wait_result(page)
    assert result["failed"] == [], result["failed"]
    assert len(result["passed"]) >= 1
    assert chromium.errors_of(page) == []
