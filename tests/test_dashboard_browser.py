"""The dashboard in a real browser: headless Chromium, driven by Playwright.

Debian's `chromium` is used as it is installed (`executable_path`); Playwright downloads
no browser of its own. Without the Playwright package or without Chromium, every test
here is skipped and says which is missing and how `make test` installs it.

Each test drives a real controller (and its daemon) the way a person would: log in,
press the buttons, watch the page change by itself. Each saves a screenshot of the pages
it visits: into the test's temporary directory, or, with CRONMGR_SCREENSHOTS=1, into
docs/screenshots/ for the README. The log page shows the homes' paths, so the README's
set is made with a neutral base directory:

    CRONMGR_SCREENSHOTS=1 .venv/bin/python -m pytest -p no:cacheprovider \
        --basetemp=/srv/cronmgr-demo tests/test_dashboard_browser.py
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import browser_support
from browser_support import DESKTOP, PHONE, Page, api, expect, log_in, shoot
from support import Controller, wait_for

# The shared fixtures, which pytest finds by their names here.
browser = browser_support.browser
open_page = browser_support.open_page
shots = browser_support.shots
pytestmark = browser_support.needs_chromium

# Shell steps, so that the screenshots show no interpreter's path.
HELLO = """\
description = "says hello"
[[steps]]
name = "hello"
shell = "echo hello from cronmgr"
"""
FAILING = """\
description = "fails on purpose, every second"
[schedule]
type = "interval"
interval_seconds = 1
[[steps]]
name = "check"
shell = "echo 'upstream returned 503'; exit 2"
"""


def controller_with_hello(factory: Callable[..., Controller], **overrides: Any) -> Controller:
    """A real controller whose home has the `hello` pipeline too."""
    controller = factory(**overrides)
    (controller.settings.pipelines_path / "hello.toml").write_text(HELLO)
    return controller


def runs_of(controller: Controller, query: str) -> list[dict[str, Any]]:
    """Runs as the API lists them."""
    found: list[dict[str, Any]] = api(controller, "GET", f"/api/v1/runs?{query}")
    return found


def test_log_in_start_the_daemon_and_watch_a_run_appear(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """Login, Start, the state turns running, a run shows up by itself, its page, Stop."""
    controller = controller_with_hello(controller_factory)
    page = open_page()
    page.goto(controller.url + "/ui/")
    expect(page.get_by_label("API token")).to_be_visible()
    shoot(page, shots, "login")
    page.get_by_label("API token").fill("wrong-token-wrong-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("That is not the API token.")
    log_in(page, controller)
    expect(page.locator("#daemon-state")).to_have_text("stopped")

    page.get_by_label("Pipeline").select_option("hello")
    page.get_by_label("Every (seconds, at least 10)").fill("10")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#daemon-state")).to_have_text("running")
    expect(page.get_by_role("status")).to_contain_text("Daemon started (PID: ")
    # No reload from here on: the page's script brings the run in when it is recorded.
    recent = page.locator("#recent-runs")
    expect(recent.locator(".s-succeeded")).to_have_count(1, timeout=15_000)
    expect(page.locator("#next-runs")).to_contain_text("pipeline hello")
    shoot(page, shots, "overview")

    recent.get_by_role("link", name="…").first.click()
    expect(page.locator("#steps")).to_contain_text("1. hello")
    expect(page.locator("pre.output")).to_have_text("stdout: hello from cronmgr")
    shoot(page, shots, "run")

    page.get_by_role("link", name="Overview").click()
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#daemon-state")).to_have_text("stopped")
    assert not controller.settings.pid_file.exists()


def test_pause_a_schedule_with_its_sparkline(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """A target polled every second fills its sparkline; Pause stops it, Resume restarts."""
    controller = controller_with_hello(controller_factory)
    target = api(
        controller,
        "POST",
        "/api/v1/targets",
        {
            "name": "<script>alert(1)</script> health",
            "url": f"{controller.url}/health?token=s3cr3t-in-url",
            "headers": {"Authorization": "Bearer s3cr3t-header", "X-Trace": "dashboard-test"},
        },
    )
    schedule = api(
        controller,
        "POST",
        "/api/v1/schedules",
        {
            "name": "controller health",
            "schedule_type": "interval",
            "interval_seconds": 1,
            "target_id": target["id"],
        },
    )
    api(controller, "POST", "/api/cron/start", {"interval_seconds": 60, "pipeline": "hello"})
    wait_for(
        lambda: len(runs_of(controller, f"schedule_id={schedule['id']}&status=succeeded")) >= 3,
        what="three runs of the health schedule",
    )
    page = open_page()
    log_in(page, controller, "/ui/schedules")
    row = page.locator(f"#schedule-{schedule['id']}")
    expect(row).to_contain_text("<script>alert(1)</script> health")  # as text, not as markup
    assert row.locator("svg.spark rect.s-succeeded").count() >= 3
    expect(row.locator(".badge").first).to_have_text("active")
    shoot(page, shots, "schedules")

    row.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status")).to_have_text("Schedule controller health paused")
    expect(row.locator(".badge").first).to_have_text("paused")
    assert api(controller, "GET", f"/api/v1/schedules/{schedule['id']}")["status"] == "paused"
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".badge").first).to_have_text("active")

    page.get_by_role("link", name="Targets").click()
    body = page.locator("main").inner_text()
    assert (
        "Authorization: ***" in body and "token=***" in body and "X-Trace: dashboard-test" in body
    )
    assert "s3cr3t" not in page.content()
    shoot(page, shots, "targets")


def test_follow_the_log_live_with_filters(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """The log page follows over server-sent events: a new run's output shows by itself."""
    controller = controller_with_hello(controller_factory)
    api(controller, "POST", "/api/cron/start", {"interval_seconds": 60, "pipeline": "hello"})
    wait_for(lambda: runs_of(controller, "status=succeeded"), what="the first run")
    page = open_page()
    log_in(page, controller, "/ui/logs")
    expect(page.locator("#follow-state")).to_have_text("Following the log live.")
    before = page.locator("#log tbody tr").count()
    run = api(controller, "POST", "/api/v1/pipelines/hello/run")
    line = page.locator("#log tbody tr", has_text="line=hello from cronmgr")
    expect(line.filter(has_text=run["id"][:13])).to_have_count(1, timeout=15_000)
    assert page.locator("#log tbody tr").count() > before
    shoot(page, shots, "logs")

    page.get_by_label("Run", exact=True).fill(run["id"])
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#follow-state")).to_have_text("Following the log live.")
    rows = page.locator("#log tbody tr")
    expect(rows.first).to_be_visible()
    assert all(run["id"][:13] in text for text in rows.all_inner_texts())
    page.get_by_label("Level at least").select_option("error")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#log tbody tr")).to_have_count(0)


def test_pipelines_run_now_and_an_incident(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """Run now from the pipelines page; a pipeline failing run after run opens an incident."""
    controller = controller_with_hello(controller_factory, incident_threshold=2)
    (controller.settings.pipelines_path / "flaky.toml").write_text(FAILING)
    api(controller, "POST", "/api/cron/start", {"interval_seconds": 60, "pipeline": "hello"})
    page = open_page()
    log_in(page, controller, "/ui/pipelines")
    card = page.locator("#pipeline-hello")
    card.get_by_role("button", name="Run now").click()
    expect(page.get_by_role("status")).to_contain_text("of pipeline hello asked for")
    expect(page.locator("#pipeline-flaky")).to_contain_text("every 1 s")
    expect(page.locator("#pipeline-flaky .badge").first).to_have_text("failed", timeout=15_000)
    shoot(page, shots, "pipelines")

    page.get_by_role("link", name="flaky").click()
    expect(page.get_by_role("heading", name="Pipeline flaky")).to_be_visible()
    shoot(page, shots, "pipeline")

    page.get_by_role("link", name="Incidents").click()
    incident = page.locator("#incidents tbody tr", has_text="pipeline flaky")
    expect(incident).to_have_count(1, timeout=15_000)
    expect(incident).to_contain_text("open")
    shoot(page, shots, "incidents")


def test_a_phone_and_no_javascript(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """On a phone's width nothing runs off the side; without JavaScript the forms still work."""
    controller = controller_with_hello(controller_factory)
    page = open_page(viewport=PHONE, javascript=False)
    log_in(page, controller)
    page.get_by_label("Pipeline").select_option("hello")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#daemon-state")).to_have_text("running")
    wait_for(lambda: runs_of(controller, "status=succeeded"), what="the first run")
    page.reload()  # no script: a reload is how this page gets newer
    expect(page.locator("#recent-runs .s-succeeded")).to_have_count(1)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the phone"
    shoot(page, shots, "overview-phone")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#daemon-state")).to_have_text("stopped")


def test_the_nodes_page_from_the_navigation_on_a_phone(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """The running daemon's node is listed, live on this host with its lease counting
    down by itself, and the table scrolls within its card on a phone's width."""
    controller = controller_with_hello(controller_factory)
    api(controller, "POST", "/api/cron/start", {"interval_seconds": 60, "pipeline": "hello"})
    (node,) = api(controller, "GET", "/api/v1/nodes")
    page = open_page(viewport=PHONE)
    log_in(page, controller)
    page.get_by_role("link", name="Nodes").click()
    row = page.locator(f"#node-{node['id']}")
    expect(row.locator(".badge")).to_have_text("live")
    expect(row).to_contain_text("this host")
    expect(row).to_contain_text("hello")
    lease = row.locator("time").first
    before = lease.inner_text()
    assert before.startswith("in ")
    expect(lease).not_to_have_text(before, timeout=10_000)  # the page refreshes itself
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the phone"
    shoot(page, shots, "nodes-phone")
    page.set_viewport_size(DESKTOP)
    shoot(page, shots, "nodes")


# --- the log page: newest line in view, older pages on demand, tracebacks folded ----------

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "step.py", line 3, in <module>\n'
    "ValueError: the upstream said no\n"
)


def write_log_lines(controller: Controller, count: int) -> None:
    """`count` lines in the daemon's log, as it writes them; line 120 holds a traceback."""
    path = controller.settings.log_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for i in range(count):
            record: dict[str, Any] = {
                "event": f"event_{i:03d}",
                "level": "info",
                "timestamp": f"2030-01-02T03:{i // 60:02d}:{i % 60:02d}.000Z",
                "run_id": f"run-{i:03d}",
                "line": f"output line number {i} of a step that talks at some length",
            }
            if i == 120:
                record |= {"level": "error", "exception": TRACEBACK}
            fh.write(json.dumps(record) + "\n")


def test_the_log_page_opens_at_its_newest_line_and_loads_older_ones(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """The newest line is last and in view; a new line arrives below it, still in view;
    "Load older lines" puts the page before above, in place, down to the start; a
    traceback is folded until opened."""
    controller = controller_factory()
    write_log_lines(controller, 300)
    page = open_page()
    log_in(page, controller, "/ui/logs")
    rows = page.locator("#log tbody tr")
    expect(rows).to_have_count(100)
    expect(rows.last).to_contain_text("event_299")
    expect(rows.last).to_be_in_viewport()
    expect(rows.first).not_to_be_in_viewport()
    expect(page.locator("#follow-state")).to_have_text("Following the log live.")
    with controller.settings.log_file.open("a") as fh:
        fh.write(json.dumps({"event": "event_new", "level": "warning"}) + "\n")
    expect(rows.last).to_contain_text("event_new")
    expect(rows.last).to_be_in_viewport()

    first = rows.first
    expect(first).to_contain_text("event_200")
    page.get_by_role("link", name="Load older lines").click()
    expect(rows).to_have_count(201)
    expect(rows.first).to_contain_text("event_100")
    expect(page.locator("#log tbody tr", has_text="event_200")).to_be_in_viewport()
    crash = page.locator("#log tbody tr", has_text="event_120")
    trace = crash.locator("details.trace")
    expect(trace.locator("summary")).to_have_text("ValueError: the upstream said no")
    expect(trace.locator("pre")).to_be_hidden()
    trace.locator("summary").click()
    expect(trace.locator("pre")).to_be_visible()
    expect(trace.locator("pre")).to_contain_text('File "step.py", line 3')
    shoot(page, shots, "logs-older")

    page.get_by_role("link", name="Load older lines").click()
    expect(rows).to_have_count(301)
    expect(rows.first).to_contain_text("event_000")
    expect(page.locator("#log-older")).to_have_text("The start of the log.")


def test_the_log_page_on_a_phone_and_without_javascript(
    controller_factory: Callable[..., Controller], open_page: Callable[..., Page], shots: Path
) -> None:
    """On a 390 px phone each line wraps within the screen, newest in view; without
    JavaScript the older-lines link is a page of its own, opened at its newest line."""
    controller = controller_factory()
    write_log_lines(controller, 150)
    phone = open_page(viewport=PHONE)
    log_in(phone, controller, "/ui/logs")
    rows = phone.locator("#log tbody tr")
    expect(rows.last).to_contain_text("event_149")
    expect(rows.last).to_be_in_viewport()
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow} px wider than the phone"
    box = rows.last.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    expect(rows.last).to_contain_text("output line number 149")
    shoot(phone, shots, "logs-phone")

    plain = open_page(javascript=False)
    log_in(plain, controller, "/ui/logs?lines=100")
    plain.get_by_role("link", name="Load older lines").click()
    older = plain.locator("#log tbody tr")
    expect(older).to_have_count(50)
    expect(older.first).to_contain_text("event_000")
    expect(older.last).to_contain_text("event_049")
    expect(older.last).to_be_in_viewport()
    expect(plain.locator("#log-older")).to_have_text("The start of the log.")
    plain.get_by_role("link", name="Newest lines").first.click()
    expect(plain.locator("#log tbody tr").last).to_contain_text("event_149")
