"""/redoc in a real browser (headless Chromium, driven by Playwright), with every request
that does not go to the controller refused: the page renders the API from the OpenAPI
document offline, under its own Content-Security-Policy. Skipped, saying why, without
Playwright or Chromium (as tests/test_dashboard_browser.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from support import Controller

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the Playwright package is not installed: pip install -e '.[browser]' (make test does)",
)
CHROMIUM = os.environ.get("CRONMGR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (make test tries), "
    "or point CRONMGR_CHROMIUM at one",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium."""
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        except sync_api.Error as exc:  # a browser that cannot start here (libraries, version)
            pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {exc}")
        try:
            yield launched
        finally:
            launched.close()


def test_redoc_renders_offline_and_shows_the_endpoints(
    browser: Any, controller: Controller
) -> None:
    """Only the page itself is requested; an endpoint's path and summary are visible; the
    browser reports no policy violation or error."""
    context = browser.new_context()
    requested: list[str] = []
    refused: list[str] = []

    def only_the_controller(route: Any) -> None:
        url = route.request.url
        requested.append(url)
        if url.startswith(controller.url + "/"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", only_the_controller)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(controller.url + "/redoc")

    section = page.locator("#daemon_status")
    sync_api.expect(section.locator(".path")).to_have_text("/api/cron/status")
    sync_api.expect(section).to_contain_text("Daemon state, pid, uptime")
    sync_api.expect(section.locator(".path")).to_be_visible()
    sync_api.expect(page.locator("h1")).to_contain_text("cronmgr")
    assert page.evaluate("document.scripts.length") == 0
    assert refused == [] and requested == [controller.url + "/redoc"], requested
    assert problems == []
    context.close()
