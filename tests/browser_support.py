"""What the browser tests share: headless Chromium driven by Playwright (one browser for a
module, pages in contexts of their own), the screenshots, the REST API called with the
bearer token, and logging in the way a person does.

Debian's `chromium` is used as it is installed (`executable_path`); Playwright downloads
no browser of its own. Without the Playwright package, importing this module skips the
test module; without Chromium, `needs_chromium` skips its tests, saying what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import REPO, Controller

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the Playwright package is not installed: pip install -e '.[browser]' (make test does)",
)
CHROMIUM = os.environ.get("CRONMGR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (make test tries), "
    "or point CRONMGR_CHROMIUM at one",
)
Page = sync_api.Page
expect = sync_api.expect

# Straight to 127.0.0.1, whatever proxy the environment configures.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the whole module."""
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        except sync_api.Error as exc:  # a browser that cannot start here (libraries, version)
            pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/screenshots with CRONMGR_SCREENSHOTS=1, else tmp_path."""
    if os.environ.get("CRONMGR_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Page]]:
    """New pages in contexts of their own (cookies apart), all closed after the test."""
    contexts: list[Any] = []

    def factory(viewport: dict[str, int] = DESKTOP, javascript: bool = True) -> Page:
        context = browser.new_context(viewport=viewport, java_script_enabled=javascript)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


def api(controller: Controller, method: str, path: str, body: Any = None) -> Any:
    """One call of the REST API with the bearer token; the JSON answer."""
    request = urllib.request.Request(
        controller.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={**controller.headers, "Content-Type": "application/json"},
    )
    with OPENER.open(request, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def log_in(page: Page, controller: Controller, path: str = "/ui/") -> None:
    """Open a dashboard page, get sent to the login form, log in and land on the page."""
    page.goto(controller.url + path)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("API token").fill(controller.token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(controller.url + path)


def shoot(page: Page, shots: Path, name: str) -> None:
    """A full-page screenshot, named for the page."""
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
