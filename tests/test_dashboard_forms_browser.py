"""The dashboard's target and schedule forms in a real browser (headless Chromium driven by
Playwright, as in test_dashboard_browser.py): create a target, edit it with an invalid
field, send it, read its chart, delete it after its schedule, and every page at a phone's
width. With CRONMGR_SCREENSHOTS=1 the form and the target's page are saved into
docs/screenshots/ (target-edit.png, target-detail.png) for the README.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import browser_support
import pytest
from browser_support import PHONE, Page, api, expect, log_in, shoot
from support import Controller, wait_for

# The shared fixtures, which pytest finds by their names here.
browser = browser_support.browser
open_page = browser_support.open_page
shots = browser_support.shots
pytestmark = browser_support.needs_chromium


class _Upstream(BaseHTTPRequestHandler):
    """An API on 127.0.0.1 that takes a little longer each time and fails every fifth call."""

    calls = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            type(self).calls += 1
            call = self.calls
        time.sleep(0.01 * (call % 7))
        failed = call % 5 == 0
        body = json.dumps({"orders": call, "ok": not failed}).encode()
        self.send_response(503 if failed else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test's output is for the test


@pytest.fixture
def upstream() -> Iterator[str]:
    """The upstream's base URL, served from a thread for the test."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def no_overflow(page: Page) -> None:
    """Nothing runs off the side of the page; a wide table scrolls within its card."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} is {overflow} px wider than the window"


def field(page: Page, label: str) -> Any:
    return page.get_by_label(label, exact=True)


def test_create_a_target_edit_it_with_an_invalid_field_and_send_it(
    controller_factory: Callable[..., Controller],
    open_page: Callable[..., Page],
    shots: Path,
    upstream: str,
) -> None:
    """Create from the form; a bad timeout is refused next to its field with the rest kept;
    fixed, it saves; "send now" shows the real answer; a schedule fills the chart."""
    controller = controller_factory()
    api(controller, "POST", "/api/cron/start", {"interval_seconds": 60})
    page = open_page()
    log_in(page, controller, "/ui/targets")
    page.get_by_role("link", name="New target").click()
    field(page, "Name").fill("Orders API")
    field(page, "URL").fill(f"{upstream}/orders")
    field(page, "Headers").fill("Authorization: Bearer s3cr3t-token\nAccept: application/json")
    field(page, "Expected status codes").fill("200")
    page.get_by_role("button", name="Create target").click()
    expect(page.get_by_role("status")).to_have_text("Target Orders API created")
    expect(page.get_by_role("heading", name="Target Orders API")).to_be_visible()
    assert "s3cr3t-token" not in page.content()

    page.get_by_role("link", name="Edit").click()
    field(page, "Timeout (seconds)").fill("900")
    field(page, "URL").fill("orders.example.test/x")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#e-timeout_seconds")).to_have_text(
        "Input should be less than or equal to 300"
    )
    expect(page.locator("#e-url")).to_contain_text("scheme must be http or https")
    expect(field(page, "Timeout (seconds)")).to_have_value("900")
    expect(field(page, "Timeout (seconds)")).to_have_attribute("aria-invalid", "true")
    expect(field(page, "Name")).to_have_value("Orders API")
    expect(page.get_by_role("alert")).to_contain_text("Not saved: invalid request body")
    shoot(page, shots, "target-edit")

    field(page, "Timeout (seconds)").fill("5")
    field(page, "URL").fill(f"{upstream}/orders")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Target Orders API saved")

    page.get_by_role("button", name="Send now").click()
    expect(page.locator("#sent-status")).to_have_text("200")
    expect(page.locator("#sent-body")).to_contain_text('"orders": 1')
    expect(page.locator("#sent-time")).to_contain_text(" ms")

    page.get_by_role("link", name="Schedule it").click()
    field(page, "Name").fill("orders every second")
    field(page, "Every (seconds)").fill("1")
    page.get_by_role("button", name="Create schedule").click()
    expect(page.get_by_role("status")).to_have_text("Schedule orders every second created")
    (target,) = api(controller, "GET", "/api/v1/targets")
    wait_for(
        lambda: len(api(controller, "GET", f"/api/v1/runs?target_id={target['id']}")) >= 12,
        timeout=30,
        what="a dozen runs of the target",
    )
    page.goto(f"{controller.url}/ui/targets/{target['id']}")
    chart = page.locator("svg.chart")
    expect(chart).to_be_visible()
    assert chart.locator("circle.point.ok").count() >= 8
    assert chart.locator("path.point.failed").count() >= 1  # every fifth call fails
    expect(page.locator("#availability-24h")).to_contain_text("%")
    expect(page.locator("#availability-7d")).to_contain_text("runs succeeded")
    shoot(page, shots, "target-detail")


def test_delete_a_target_after_its_schedule_and_every_page_on_a_phone(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """Deleting a target its schedule calls shows the API's 409; the schedule deleted from
    its confirmation page, the target goes. On a 390 px phone no page runs off the side."""
    controller = controller_factory()
    target = api(
        controller,
        "POST",
        "/api/v1/targets",
        {"name": "health", "url": f"{controller.url}/health?token=abc"},
    )
    schedule = api(
        controller,
        "POST",
        "/api/v1/schedules",
        {"name": "health check", "schedule_type": "cron", "cron_expression": "*/5 * * * *",
         "target_id": target["id"]},
    )  # fmt: skip
    page = open_page(viewport=PHONE, javascript=False)
    log_in(page, controller, f"/ui/targets/{target['id']}")
    expect(page.locator("#availability-24h")).to_contain_text("no runs")
    no_overflow(page)
    shoot(page, shots, "target-phone")
    for path in ("/ui/targets", "/ui/schedules", "/ui/targets/new", "/ui/schedules/new",
                 f"/ui/targets/{target['id']}/edit", "/ui/incidents", "/ui/runs"):  # fmt: skip
        page.goto(controller.url + path)
        no_overflow(page)

    page.goto(f"{controller.url}/ui/targets/{target['id']}")
    page.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete target health?")).to_be_visible()
    page.get_by_role("button", name="Delete target").click()
    expect(page.get_by_role("alert")).to_have_text(
        "target 'health' is used by 1 schedule(s); delete them first or pass ?cascade=true"
    )
    no_overflow(page)
    page.get_by_role("link", name="health check").click()
    page.get_by_role("button", name="Delete schedule").click()
    expect(page.get_by_role("status")).to_have_text("Schedule health check deleted")
    assert api(controller, "GET", "/api/v1/schedules") == []

    page.get_by_role("link", name="Targets").click()
    page.locator(f"#target-{target['id']}").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete target").click()
    expect(page.get_by_role("status")).to_have_text("Target health deleted")
    assert api(controller, "GET", "/api/v1/targets") == []
    assert schedule["id"] not in page.content()
