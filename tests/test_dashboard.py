"""The dashboard under /ui: its login, cookies, CSRF checks, escaping, redaction and pages.

The real app on a real socket (and, for the daemon controls, a real controller process);
runs, incidents and log lines are written the way the daemon writes them, through the
store and into the log file. Every page is read as plain HTML, with no script run, so
each check also pins that the page works without JavaScript.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from support import Controller, make_home, until

from cronmgr.controller.app import create_app
from cronmgr.controller.dashboard.format import duration, relative, size, when
from cronmgr.controller.firing import DAEMON_NOT_RUNNING_WARNING
from cronmgr.controller.keys import STORE
from cronmgr.controller.sessions import SessionKeeper
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.models import (
    ErrorType,
    Node,
    Run,
    RunStatus,
    ScheduleStatus,
    StepResult,
    Trigger,
    new_id,
    utcnow,
)
from cronmgr.core.pidfile import inspect
from cronmgr.store import Store
from cronmgr.store.records import Incident, Progress

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]

PAGES = (
    "/ui/",
    "/ui/schedules",
    "/ui/runs",
    "/ui/pipelines",
    "/ui/pipelines/quick",
    "/ui/targets",
    "/ui/incidents",
    "/ui/nodes",
    "/ui/logs",
    "/ui/logs/stream",
)
ACTIONS = (
    "/ui/daemon/start",
    "/ui/daemon/stop",
    "/ui/daemon/restart",
    "/ui/pipelines/quick/run",
    "/ui/logout",
)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SCRIPT_NAME = "<script>alert(1)</script>"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home of its own with the demo and the test pipelines."""
    return load_settings(env={}, home=make_home(tmp_path))


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    """The real app on a real socket; no token is sent unless a test says so."""
    return await aiohttp_client(create_app(settings))


def api_headers(settings: Settings) -> dict[str, str]:
    """The bearer token, for the API calls that set a test up."""
    return {"Authorization": f"Bearer {settings.token_file.read_text().strip()}"}


async def log_in(client: Client, token: str) -> aiohttp.ClientResponse:
    """Open the login form and send `token` with its CSRF token; the answer, unfollowed."""
    async with client.get("/ui/login") as resp:
        nonce = csrf_of(await resp.text())
    form = {"csrf_token": nonce, "token": token, "next": "/ui/"}
    async with client.post("/ui/login", data=form, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def logged_in(client: Client, settings: Settings) -> str:
    """Log in with the right token; the session's CSRF token, as the overview's forms hold it."""
    resp = await log_in(client, settings.token_file.read_text().strip())
    assert resp.status == 303, resp.status
    return csrf_of(await page(client, "/ui/"))


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


async def page(client: Client, path: str, status: int = 200) -> str:
    """A page's HTML; its status asserted."""
    async with client.get(path) as resp:
        text = await resp.text()
        assert resp.status == status, text[:2000]
        return text


def store_of(client: Client) -> Store:
    """The app's own store, to write what the daemon would."""
    store: Store = client.app[STORE]
    return store


async def new_target(client: Client, settings: Settings, **fields: Any) -> dict[str, Any]:
    """A target created through the API."""
    body = {"name": "health", "url": "http://127.0.0.1:9/health", **fields}
    async with client.post("/api/v1/targets", json=body, headers=api_headers(settings)) as resp:
        assert resp.status == 201, await resp.text()
        created: dict[str, Any] = await resp.json()
        return created


async def new_schedule(client: Client, settings: Settings, **fields: Any) -> dict[str, Any]:
    """An interval schedule created through the API."""
    body = {"name": "every minute", "schedule_type": "interval", "interval_seconds": 60, **fields}
    async with client.post("/api/v1/schedules", json=body, headers=api_headers(settings)) as resp:
        assert resp.status == 201, await resp.text()
        created: dict[str, Any] = await resp.json()
        return created


async def finished_run(
    store: Store, job: str, schedule_id: str | None, status: RunStatus, seconds: float
) -> Run:
    """A run that took `seconds`, as the daemon records one."""
    started = utcnow() - timedelta(seconds=seconds + 1)
    run = Run(new_id(), job, started, Trigger.SCHEDULE, schedule_id=schedule_id)
    assert await store.insert_run(run)
    finished = started + timedelta(seconds=seconds)
    error = "step 'fetch' failed" if status is RunStatus.FAILED else None
    await store.update_run(run.id, status, started_at=started, finished_at=finished, error=error)
    return await store.get_run(run.id)


# --- login and sessions -------------------------------------------------------------------


async def test_every_page_and_action_sends_a_browser_without_a_session_to_the_login(
    client: Client,
) -> None:
    """No page shows, and no action runs, without a session: 303 to the login, coming back."""
    for path in PAGES:
        async with client.get(path, allow_redirects=False) as resp:
            assert resp.status == 303, path
            assert resp.headers["Location"].startswith("/ui/login?next="), path
    for path in ACTIONS:
        async with client.post(path, data={}, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"].startswith("/ui/login"), path
    async with client.get("/ui", allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/ui/"
    status = await page(client, "/health")
    assert "healthy" in status
    async with client.get("/ui/login") as resp:
        assert resp.status == 200 and "API token" in await resp.text()


async def test_a_wrong_token_gets_401_and_no_session(client: Client) -> None:
    """The login form answers a wrong token with 401 and itself again; no cookie is set."""
    resp = await log_in(client, "not-the-token-at-all")
    assert resp.status == 401
    assert "cronmgr_session" not in resp.cookies
    async with client.get("/ui/", allow_redirects=False) as resp:
        assert resp.status == 303


async def test_the_session_cookie_is_httponly_samestrict_and_holds_no_token(
    client: Client, settings: Settings
) -> None:
    """The cookie: HttpOnly, SameSite=Strict, only for /ui, signed, without the token in it."""
    token = settings.token_file.read_text().strip()
    resp = await log_in(client, token)
    assert resp.status == 303 and resp.headers["Location"] == "/ui/"
    cookies = [c for c in resp.headers.getall("Set-Cookie") if c.startswith("cronmgr_session=")]
    assert len(cookies) == 1
    flags = {part.strip().split("=")[0].lower(): part for part in cookies[0].split(";")}
    assert "httponly" in flags and flags["samesite"].strip().lower() == "samesite=strict"
    assert flags["path"].strip().lower() == "path=/ui"
    assert token not in cookies[0]
    html = await page(client, "/ui/")
    assert "Daemon" in html and token not in html


async def test_the_login_form_needs_its_csrf_token(client: Client, settings: Settings) -> None:
    """A login POST without the form's CSRF token is 403, even with the right API token."""
    form = {"token": settings.token_file.read_text().strip()}
    async with client.post("/ui/login", data=form, allow_redirects=False) as resp:
        assert resp.status == 403
        assert "CSRF" in await resp.text()
        assert "cronmgr_session" not in resp.cookies


async def test_login_never_redirects_off_the_dashboard(client: Client, settings: Settings) -> None:
    """`next` outside /ui (another site, a scheme-relative URL) falls back to the overview."""
    token = settings.token_file.read_text().strip()
    for evil in ("https://example.org/", "//example.org/ui/", "/api/cron/stop", "/ui\\..\\x"):
        client.session.cookie_jar.clear()  # logged out again: a session skips the form
        async with client.get("/ui/login") as resp:
            nonce = csrf_of(await resp.text())
        form = {"csrf_token": nonce, "token": token, "next": evil}
        async with client.post("/ui/login", data=form, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/ui/", evil


async def test_logging_out_revokes_the_session(client: Client, settings: Settings) -> None:
    """After logout the old cookie, sent again, is refused."""
    csrf = await logged_in(client, settings)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/ui/"))["cronmgr_session"]
    async with client.post("/ui/logout", data={"csrf_token": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/ui/login"
    headers = {"Cookie": f"cronmgr_session={cookie.value}"}
    async with client.get("/ui/", headers=headers, allow_redirects=False) as resp:
        assert resp.status == 303


def test_session_cookies_cannot_be_forged_and_expire() -> None:
    """A changed id, expiry or signature is refused, as is a cookie past its expiry."""
    now = [1_000_000.0]
    keeper = SessionKeeper(lifetime_seconds=60, clock=lambda: now[0])
    session, cookie = keeper.issue()
    assert keeper.check(cookie) == session
    session_id, expires, signature = cookie.split(".")
    for forged in (
        f"{session_id}.{int(expires) + 3600}.{signature}",
        f"x{session_id}.{expires}.{signature}",
        # A changed last character (it may be "A" already: then "B").
        f"{session_id}.{expires}.{signature[:-1]}{'B' if signature.endswith('A') else 'A'}",
        f"{session_id}.{expires}",
        "",
    ):
        assert keeper.check(forged) is None, forged
    assert SessionKeeper().check(cookie) is None  # another controller's key
    assert keeper.csrf_ok(session, session.csrf_token) and not keeper.csrf_ok(session, "x")
    assert session.csrf_token != signature
    now[0] += 61
    assert keeper.check(cookie) is None


def test_times_durations_and_sizes_read_as_a_person_would() -> None:
    """Two units at most, no zero parts, UTC to the second, binary sizes, a dash if unknown."""
    cases = [(0.25, "250 ms"), (4.25, "4.2 s"), (10, "10 s"), (60, "1 min"), (61, "1 min 1 s")]
    cases += [(3600, "1 h"), (3660, "1 h 1 min"), (90061, "1 d 1 h")]
    assert [duration(seconds) for seconds, _ in cases] == [text for _, text in cases]
    assert [size(n) for n in (512, 2048, 5 * 1024**3)] == ["512 B", "2.0 KiB", "5.0 GiB"]
    now = utcnow()
    assert relative(now + timedelta(seconds=90), now) == "in 1 min 30 s"
    assert relative((now - timedelta(seconds=5)).isoformat(), now) == "5 s ago"
    assert when("2030-01-02T03:04:05+01:00") == "2030-01-02 02:04:05 UTC"
    assert duration(None) == size(None) == when(None) == when("not a time") == "—"


async def test_without_auth_the_login_needs_no_token(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """With auth off (loopback only) the login form just opens a session, CSRF and all."""
    settings = load_settings(env={}, home=make_home(tmp_path), auth=False)
    client = await aiohttp_client(create_app(settings))
    html = await page(client, "/ui/login")
    assert "without authentication" in html and 'name="token"' not in html
    resp = await log_in(client, "")
    assert resp.status == 303
    assert "Daemon" in await page(client, "/ui/")


# --- CSRF, escaping, secrets, headers ------------------------------------------------------


async def test_state_changes_without_the_csrf_token_are_403(
    client: Client, settings: Settings
) -> None:
    """A POST with no or a wrong CSRF token is refused with 403 and changes nothing."""
    csrf = await logged_in(client, settings)
    schedule = await new_schedule(client, settings, pipeline="quick")
    pause = f"/ui/schedules/{schedule['id']}/pause"
    for form in ({}, {"csrf_token": "forged"}, {"csrf_token": csrf[:-1]}):
        async with client.post(pause, data=form, allow_redirects=False) as resp:
            assert resp.status == 403
            assert "CSRF token" in await resp.text()
    stored = await store_of(client).get_schedule(schedule["id"])
    assert stored.status is ScheduleStatus.ACTIVE
    async with client.post(pause, headers={"X-CSRF-Token": "forged"}) as resp:
        assert resp.status == 403
    async with client.post(pause, data={"csrf_token": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/ui/schedules"
    stored = await store_of(client).get_schedule(schedule["id"])
    assert stored.status is ScheduleStatus.PAUSED
    html = await page(client, "/ui/schedules")
    assert "Schedule every minute paused" in html and "Resume" in html


async def test_a_target_named_script_renders_as_text(client: Client, settings: Settings) -> None:
    """Names, errors and output are escaped: `<script>` shows as text on every page."""
    await logged_in(client, settings)
    target = await new_target(client, settings, name=SCRIPT_NAME)
    schedule = await new_schedule(client, settings, name=SCRIPT_NAME, target_id=target["id"])
    store = store_of(client)
    run = await finished_run(store, f"target:{target['id']}", schedule["id"], RunStatus.FAILED, 0.2)
    result = StepResult(
        SCRIPT_NAME,
        RunStatus.FAILED,
        utcnow(),
        200,
        status_code=500,
        error=SCRIPT_NAME,
        output_tail=(SCRIPT_NAME,),
    )
    await store.insert_step_result(run.id, 0, result)
    for path in ("/ui/targets", "/ui/schedules", "/ui/runs", f"/ui/runs/{run.id}", "/ui/"):
        html = await page(client, path)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert "<script>alert" not in html, path


async def test_target_secrets_are_redacted(client: Client, settings: Settings) -> None:
    """Credential headers and URL secrets show as ***; `${env:NAME}` references stay."""
    await logged_in(client, settings)
    await new_target(
        client,
        settings,
        url="https://user:pa55word-value@example.org/hook?token=t0ken-value&page=2",
        headers={
            "Authorization": "Bearer s3cr3t-value",
            "X-Api-Key": "k3y-value",
            "X-Tenant": "${env:TENANT_ID}",
        },
    )
    html = await page(client, "/ui/targets")
    for secret in ("s3cr3t-value", "k3y-value", "pa55word-value", "t0ken-value"):
        assert secret not in html
    assert "Authorization: ***" in html and "X-Api-Key: ***" in html
    assert "${env:TENANT_ID}" in html and "page=2" in html
    assert settings.token_file.read_text().strip() not in html


async def test_pages_carry_the_security_headers(client: Client, settings: Settings) -> None:
    """No framing, no foreign script or style, no caching, no sniffing."""
    await logged_in(client, settings)
    for path in ("/ui/", "/ui/login", "/ui/runs/no-such-run"):
        async with client.get(path) as resp:
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["Cache-Control"] == "no-store"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_api_keeps_its_bearer_token(client: Client, settings: Settings) -> None:
    """A dashboard session opens no API endpoint: those still want the bearer token."""
    await logged_in(client, settings)
    async with client.get("/api/cron/status") as resp:
        assert resp.status == 401
    async with client.get("/api/cron/status", headers=api_headers(settings)) as resp:
        assert resp.status == 200


# --- the pages, as plain HTML ----------------------------------------------------------------


async def test_assets_are_served_by_the_controller(client: Client) -> None:
    """The stylesheet and the script come from /ui/static, without a session; no CDN."""
    html = await page(client, "/ui/login")
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for asset, kind in (("dashboard.css", "text/css"), ("dashboard.js", "javascript")):
        async with client.get(f"/ui/static/{asset}") as resp:
            assert resp.status == 200 and kind in resp.content_type, asset
            assert "http" not in (await resp.text()).split("\n", 3)[-1]
    assert 'name="viewport"' in html


async def test_schedules_show_status_next_run_last_result_and_a_sparkline(
    client: Client, settings: Settings
) -> None:
    """Each schedule: its timing, status, next run, last run's status and one bar per run."""
    await logged_in(client, settings)
    schedule = await new_schedule(client, settings, pipeline="quick", interval_seconds=30)
    store = store_of(client)
    for status, seconds in ((RunStatus.SUCCEEDED, 0.5), (RunStatus.FAILED, 2.0)) * 2:
        await finished_run(store, "pipeline:quick", schedule["id"], status, seconds)
    html = await page(client, "/ui/schedules")
    row = html[html.index(f'id="schedule-{schedule["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert "every minute" in row and "every 30 s" in row and "s-active" in row
    assert row.count("<rect") == 4 and row.count('class="s-failed"') == 2
    assert "2/4 ok" in row and 'aria-label="last 4 runs: 2 succeeded"' in row
    assert "Pause" in row and "pipeline quick" in row


async def test_a_schedule_in_error_shows_its_reason_in_red_and_can_be_resumed(
    client: Client, settings: Settings
) -> None:
    """A schedule the engine set aside: an `error` badge (styled as a failure), the reason
    in words, a Resume button that makes it active again."""
    csrf = await logged_in(client, settings)
    schedule = await new_schedule(client, settings, pipeline="quick", interval_seconds=30)
    reason = "its next time can't be computed: interval 1e+308 s is out of range"
    error = Progress(schedule["id"], 0, 0, None, None, status=ScheduleStatus.ERROR,
                     status_reason=reason)  # fmt: skip
    await store_of(client).record_progress([error])  # as the engine writes it
    html = await page(client, "/ui/schedules")
    row = html[html.index(f'id="schedule-{schedule["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert 'class="badge s-error"' in row and "interval 1e+308 s is out of range" in row
    assert "/resume" in row and "/pause" not in row
    css = await page(client, "/ui/static/dashboard.css")
    assert ".s-error" in css.split("{ background: var(--fail); }")[0].splitlines()[-1]
    resume = f"/ui/schedules/{schedule['id']}/resume"
    async with client.post(resume, data={"csrf_token": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303
    assert (await store_of(client).get_schedule(schedule["id"])).status is ScheduleStatus.ACTIVE


async def test_resuming_a_schedule_without_a_daemon_says_it_fires_once_the_daemon_starts(
    client: Client, settings: Settings
) -> None:
    """The flash of Resume carries the API's warning, word for word."""
    csrf = await logged_in(client, settings)
    schedule = await new_schedule(client, settings, pipeline="quick", interval_seconds=30)
    await store_of(client).set_schedule_status(schedule["id"], ScheduleStatus.PAUSED, "paused")
    resume = f"/ui/schedules/{schedule['id']}/resume"
    async with client.post(resume, data={"csrf_token": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303
    html = await page(client, "/ui/schedules")
    assert f"Schedule {schedule['name']} resumed; {DAEMON_NOT_RUNNING_WARNING}" in html


async def test_a_run_page_shows_steps_attempts_codes_and_output(
    client: Client, settings: Settings
) -> None:
    """Every attempt of every step: status, exit code, HTTP status, error, output excerpt."""
    await logged_in(client, settings)
    store = store_of(client)
    run = await finished_run(store, "pipeline:quick", None, RunStatus.FAILED, 1.5)
    started = utcnow()
    attempts = (
        (0, StepResult("fetch", RunStatus.FAILED, started, 40, attempt=1, status_code=503,
                       error_type=ErrorType.HTTP_5XX, error="503 Service Unavailable")),
        (0, StepResult("fetch", RunStatus.SUCCEEDED, started, 30, attempt=2, status_code=200,
                       response_size=2048)),
        (1, StepResult("load", RunStatus.FAILED, started, 1200, exit_code=3,
                       error_type=ErrorType.EXIT_CODE, error="exit code 3",
                       output_tail=("loading rows", "row 17 is bad"))),
    )  # fmt: skip
    for position, result in attempts:
        await store.insert_step_result(run.id, position, result)
    html = await page(client, f"/ui/runs/{run.id}")
    assert html.index("1. fetch") < html.index("2. load")
    for text in ("503", "http_5xx: 503 Service Unavailable", "2.0 KiB", "exit_code: exit code 3"):
        assert text in html, text
    assert "loading rows\nrow 17 is bad" in html and "Output of attempt 1" in html
    assert f"/ui/logs?run_id={run.id}" in html
    listed = await page(client, "/ui/runs?status=failed")
    assert run.id in listed
    assert run.id not in await page(client, "/ui/runs?status=succeeded")


async def test_pipelines_show_steps_schedule_and_env_names_only(
    client: Client, settings: Settings
) -> None:
    """The list names every pipeline and broken file; a pipeline's page lists its steps."""
    home = settings.pipelines_path
    (home / "etl.toml").write_text(
        'description = "nightly load"\n[schedule]\ntype = "cron"\ncron = "30 2 * * *"\n'
        '[[steps]]\nname = "extract"\ncommand = ["true"]\nenv = { DB_PASSWORD = "pw-value" }\n'
        '[[steps]]\nname = "load"\nshell = "echo loaded"\nneeds = ["extract"]\n'
    )
    (home / "broken.toml").write_text("[[steps]]\nname = 'x'\n")
    await logged_in(client, settings)
    listed = await page(client, "/ui/pipelines")
    for text in ('id="pipeline-etl"', 'id="pipeline-quick"', "nightly load", "broken.toml"):
        assert text in listed, text
    assert "cron <code>30 2 * * *</code> UTC" in listed and "not synced yet" in listed
    html = await page(client, "/ui/pipelines/etl")
    assert "extract" in html and "echo loaded" in html and "DB_PASSWORD" in html
    assert "pw-value" not in html
    assert "Run now" in html
    missing = await page(client, "/ui/pipelines/nope", status=404)
    assert "unknown pipeline" in missing


async def test_run_now_needs_a_running_daemon(client: Client, settings: Settings) -> None:
    """Run now without a daemon says why on the page it came from; no run is recorded."""
    csrf = await logged_in(client, settings)
    form = {"csrf_token": csrf, "back": "/ui/pipelines/quick"}
    async with client.post("/ui/pipelines/quick/run", data=form, allow_redirects=False) as resp:
        assert resp.status == 303 and resp.headers["Location"] == "/ui/pipelines/quick"
    html = await page(client, "/ui/pipelines/quick")
    assert "the daemon is not running" in html and "flash-error" in html
    assert await store_of(client).list_runs() == []
    again = await page(client, "/ui/pipelines/quick")
    assert "the daemon is not running" not in again  # a flash shows once


async def test_incidents_are_listed_open_first(client: Client, settings: Settings) -> None:
    """An open incident shows on its page and on the overview; resolved ones on request."""
    await logged_in(client, settings)
    store = store_of(client)
    started = utcnow() - timedelta(minutes=5)
    incident = Incident(
        new_id(),
        "pipeline:quick",
        started,
        started + timedelta(minutes=1),
        failed_runs=3,
        error_class="exit_code",
        cause="step 'hello' exited with 2",
    )
    assert await store.open_incident(incident)
    html = await page(client, "/ui/incidents")
    assert "pipeline quick" in html and "step &#39;hello&#39; exited with 2" in html
    assert "exit_code" in html and ">3<" in html
    assert "pipeline quick" in await page(client, "/ui/")
    assert "No resolved incidents" in await page(client, "/ui/incidents?status=resolved")


def a_node(node_id: str, host: str, lease_seconds: float, quick: str) -> Node:
    """A node that joined a minute ago, its lease holding `lease_seconds` from now."""
    now = utcnow()
    return Node(
        node_id, host, 4242, "9.9.9", now - timedelta(minutes=1), now,
        now + timedelta(seconds=lease_seconds), pipelines={"quick": quick, "slow": "5" * 16},
        schedules_owned=7, runs_in_flight=2,
    )  # fmt: skip


def node_row(html: str, node_id: str) -> str:
    """The table row of one node."""
    row = html[html.index(f'id="node-{node_id}"') :]
    return row[: row.index("</tr>")]


async def test_nodes_show_state_lease_counts_and_the_pipeline_that_differs(
    client: Client, settings: Settings
) -> None:
    """Each node of the store, as the daemons write them: its state as a badge, the lease
    in words, what it runs, its pipelines' short hashes (the whole one in the title), and
    the pipeline whose content differs from what most live nodes have marked."""
    await logged_in(client, settings)
    assert "No nodes yet" in await page(client, "/ui/nodes")
    store = store_of(client)
    agreed, otherwise = "a" * 16, "c" * 16
    await store.join_node(a_node("here", socket.gethostname(), 8.1, agreed))
    await store.join_node(a_node("there", SCRIPT_NAME, 20, agreed))
    await store.join_node(a_node("odd", "elsewhere", 20, otherwise))
    await store.join_node(a_node("gone", "elsewhere", 20, otherwise))
    await store.leave_node("gone", utcnow() - timedelta(seconds=3))
    await store.join_node(a_node("dead", "elsewhere", -1, otherwise))
    assert await store.expire_nodes(utcnow()) == ["dead"]

    html = await page(client, "/ui/nodes")
    assert '<a href="/ui/nodes" aria-current="page">Nodes</a>' in html
    here = node_row(html, "here")
    assert 'class="badge s-live"' in here and "this host" in here
    assert re.search(r">in \d(\.\d)? s<", here), here  # 8.1 s when written
    assert ">7<" in here and ">2<" in here and "9.9.9" in here and "PID 4242" in here
    assert f'<code title="{agreed}">{agreed[:8]}</code>' in here and "differs" not in here
    odd = node_row(html, "odd")
    assert f'<code title="{otherwise}">{otherwise[:8]}</code>' in odd
    assert odd.count("differs") == 2  # the quick pipeline's class and badge; slow agrees
    assert "this host" not in odd
    gone = node_row(html, "gone")
    assert 'class="badge s-left"' in gone and re.search(r">expired \d(\.\d)? s ago<", gone)
    assert "differs" in gone  # measured against the live nodes all the same
    assert 'class="badge s-lost"' in node_row(html, "dead")
    there = node_row(html, "there")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in there and "<script>" not in there
    assert (
        html.index('id="node-dead"') < html.index('id="node-gone"') < html.index('id="node-here"')
    )


def write_log(settings: Settings, *records: dict[str, Any]) -> None:
    """Append JSON lines to the log file, as the daemon writes them."""
    settings.log_file.parent.mkdir(parents=True, exist_ok=True)
    with settings.log_file.open("ab") as fh:
        for record in records:
            fh.write(orjson.dumps(record) + b"\n")


async def test_the_log_page_filters_by_level_and_run(client: Client, settings: Settings) -> None:
    """The log page shows the last lines, at least a level, of one run; escaped."""
    await logged_in(client, settings)
    stamp = "2030-01-02T03:04:05.678Z"
    write_log(
        settings,
        {"event": "daemon_ready", "level": "info", "timestamp": stamp},
        {"event": "step_output", "level": "info", "run_id": "run-a", "line": SCRIPT_NAME},
        {"event": "run_failed", "level": "error", "run_id": "run-b", "error": "boom"},
    )
    html = await page(client, "/ui/logs")
    assert "daemon_ready" in html and "03:04:05.678" in html and "run_failed" in html
    assert "line=&lt;script&gt;alert(1)&lt;/script&gt;" in html
    errors = await page(client, "/ui/logs?level=error&run_id=")
    assert "run_failed" in errors and "daemon_ready" not in errors and "error=boom" in errors
    one_run = await page(client, "/ui/logs?run_id=run-a")
    assert "step_output" in one_run and "run_failed" not in one_run
    assert 'data-stream="/ui/logs/stream?run_id=run-a&amp;cursor=' in one_run
    bad = await page(client, "/ui/logs?level=loud", status=422)
    assert "level" in bad


async def test_the_log_stream_follows_with_the_filters(client: Client, settings: Settings) -> None:
    """/ui/logs/stream is the log as server-sent events, filtered, behind the session."""
    await logged_in(client, settings)
    write_log(settings, {"event": "before", "level": "info"})
    html = await page(client, "/ui/logs?level=warning")
    stream = re.search(r'data-stream="([^"]+)"', html)
    assert stream
    url = stream.group(1).replace("&amp;", "&")
    async with client.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        write_log(
            settings,
            {"event": "quiet", "level": "info"},
            {"event": "loud", "level": "warning", "run_id": "r1"},
        )
        seen = b""
        while b'"loud"' not in seen:
            seen += await resp.content.readany()
    assert b"before" not in seen and b"quiet" not in seen
    assert re.search(rb'id: \d+:\d+:[0-9a-f]{8}\ndata: \{"event":"loud"', seen)


LOG_ROW = re.compile(
    r'<tr class="lvl-[^"]*">\s*<td[^>]*>[^<]*</td>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>'
)
OLDER = re.compile(r'id="older-link" href="([^"]+)"')


def events_of(html: str) -> list[str]:
    """The event column of the log page's rows, top to bottom."""
    return LOG_ROW.findall(html)


def older_link(html: str) -> str | None:
    """The page's link to older lines, unescaped, without its fragment."""
    found = OLDER.search(html)
    return found.group(1).replace("&amp;", "&").split("#")[0] if found else None


async def test_the_log_page_shows_the_newest_last_and_pages_back_to_the_start(
    client: Client, settings: Settings
) -> None:
    """A page of lines, oldest first; "older" links walk back one page at a time, across
    a rotation into the backup, to the start of the log; an older page does not follow."""
    await logged_in(client, settings)
    write_log(settings, *({"event": f"e{i}", "level": "info"} for i in range(60)))
    settings.log_file.rename(settings.log_file.with_name(settings.log_file.name + ".1"))
    write_log(settings, *({"event": f"e{i}", "level": "info"} for i in range(60, 250)))
    html = await page(client, "/ui/logs?lines=100")
    assert events_of(html) == [f"e{i}" for i in range(150, 250)]
    assert 'data-stream="/ui/logs/stream?cursor=' in html and "Newest lines</a>" not in html
    assert '<form method="get" action="/ui/logs#newest"' in html
    pages = []
    while (link := older_link(html)) is not None:
        assert "lines=100" in link and "before=" in link
        html = await page(client, link)
        pages.append(events_of(html))
        assert "data-stream" not in html and "Newest lines</a>" in html
    assert pages == [
        [f"e{i}" for i in range(50, 150)],  # 10 from the backup, then the live file's first
        [f"e{i}" for i in range(50)],
    ]
    assert "The start of the log." in html


async def test_paging_back_keeps_the_filters(client: Client, settings: Settings) -> None:
    await logged_in(client, settings)
    records = [{"event": f"e{i}", "level": "error" if i % 3 == 0 else "info"} for i in range(30)]
    write_log(settings, *records)
    html = await page(client, "/ui/logs?level=error&lines=4&run_id=")
    assert events_of(html) == ["e18", "e21", "e24", "e27"]
    link = older_link(html)
    assert link is not None and "level=error" in link and "run_id" not in link
    older = await page(client, link)
    assert events_of(older) == ["e6", "e9", "e12", "e15"]
    assert 'value="error" selected' in older


async def test_a_traceback_is_folded_under_its_line(client: Client, settings: Settings) -> None:
    await logged_in(client, settings)
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: <b>boom</b>\n'
    write_log(
        settings,
        {"event": "run_crashed", "level": "error", "run_id": "r1", "exception": trace, "n": 1},
    )
    html = await page(client, "/ui/logs")
    assert (
        '<td class="details">n=1<details class="trace"><summary>ValueError: &lt;b&gt;boom'
        "&lt;/b&gt;</summary><pre>Traceback (most recent call last):\n"
    ) in html
    assert "exception=" not in html and "<b>boom" not in html


async def test_a_log_page_whose_place_is_gone_shows_the_newest(
    client: Client, settings: Settings
) -> None:
    """An older-lines link kept past a clear: the newest lines, saying so; a bad one is 422."""
    await logged_in(client, settings)
    write_log(settings, *({"event": f"e{i}", "level": "info"} for i in range(5)))
    link = older_link(await page(client, "/ui/logs?lines=2"))
    assert link is not None
    settings.log_file.write_bytes(b"")
    write_log(settings, {"event": "after_the_clear", "level": "info"})
    html = await page(client, link)
    assert events_of(html) == ["after_the_clear"] and "That place in the log is gone" in html
    assert "data-stream" in html  # the newest lines: followed again
    assert "before" in await page(client, "/ui/logs?before=nowhere", status=422)
    assert "lines" in await page(client, "/ui/logs?lines=5000", status=422)


# --- the daemon controls, on a real controller ----------------------------------------------


def _session(controller: Controller) -> aiohttp.ClientSession:
    # An IP address as the host: the default cookie jar would drop the session cookie.
    return aiohttp.ClientSession(controller.url, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _submit(http: aiohttp.ClientSession, action: str, csrf: str, **fields: str) -> str:
    async with http.post(action, data={"csrf_token": csrf, **fields}) as resp:
        assert resp.status == 200 and resp.url.path == "/ui/"
        return await resp.text()


async def test_start_and_stop_the_daemon_from_the_overview(
    controller_factory: Callable[..., Controller],
) -> None:
    """Log in, start the daemon with a pipeline, see it running and its run, stop it."""
    controller = controller_factory()
    async with _session(controller) as http:
        async with http.get("/ui/login") as resp:
            nonce = csrf_of(await resp.text())
        form = {"csrf_token": nonce, "token": controller.token}
        async with http.post("/ui/login", data=form) as resp:
            assert resp.status == 200 and resp.url.path == "/ui/"
            html = await resp.text()
        assert 'id="daemon-state">stopped<' in html
        csrf = csrf_of(html)
        html = await _submit(
            http, "/ui/daemon/start", csrf, pipeline="quick", interval_seconds="60"
        )
        assert "Daemon started (PID: " in html and 'id="daemon-state">running<' in html
        pid = re.search(r'id="daemon-pid">(\d+)<', html)
        assert pid and f"(PID: {pid.group(1)})" in html
        assert "pipeline quick" in html

        async def run_listed() -> bool:
            async with http.get("/ui/runs?status=succeeded") as resp:
                return "pipeline quick" in await resp.text()

        await async_wait_for(run_listed, "the first run on the runs page")
        html = await _submit(http, "/ui/daemon/stop", csrf)
        assert "Daemon stopped" in html and 'id="daemon-state">stopped<' in html


async def async_wait_for(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an async check until it holds (15 s at most)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _give_up(api: aiohttp.ClientSession, controller: Controller) -> None:
    """Kill the daemon while its pipeline file is away: the relaunch fails, supervision gives
    up into `fatal`; then the file comes back, so only the last spec decides what starts."""
    quick = controller.settings.pipelines_path / "quick.toml"
    text = quick.read_text()
    quick.unlink()
    found = inspect(controller.settings.pid_file)
    assert found.process is not None
    found.process.kill()

    async def fatal() -> bool:
        async with api.get("/api/cron/status") as resp:
            return (await resp.json())["state"] == "fatal"

    await until(fatal, what="supervision to give up")
    quick.write_text(text)


async def test_after_supervision_gave_up_api_and_dashboard_start_the_same_daemon(
    controller_factory: Callable[..., Controller],
) -> None:
    """A bare POST /api/cron/start and the dashboard's Start, as its form comes, both bring
    back the last start's pipeline and interval, not the configured defaults."""
    controller = controller_factory(
        supervise=True,
        supervise_poll_seconds=0.1,
        restart_backoff_seconds=0.1,
        restart_max_quick_failures=1,
    )
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as api,
        _session(controller) as ui,
    ):
        body = {"pipeline": "quick", "interval_seconds": 45}
        async with api.post("/api/cron/start", json=body) as resp:
            assert resp.status == 200, await resp.text()
        await _give_up(api, controller)
        async with api.post("/api/cron/start") as resp:
            started = await resp.json()
            assert resp.status == 200, started
        assert (started["pipeline"], started["interval_seconds"]) == ("quick", 45)

        await _give_up(api, controller)
        async with ui.get("/ui/login") as resp:
            nonce = csrf_of(await resp.text())
        form = {"csrf_token": nonce, "token": controller.token}
        async with ui.post("/ui/login", data=form) as resp:
            html = await resp.text()
        assert 'id="daemon-state">fatal<' in html
        assert '<option value="quick" selected>' in html and 'value="45"' in html
        html = await _submit(
            ui, "/ui/daemon/start", csrf_of(html), pipeline="quick", interval_seconds="45"
        )
        assert "pipeline quick every 45 s" in html, html[:2000]
        # An empty form field falls back the same way (the API's empty body, field by field).
        await _give_up(api, controller)
        html = await _submit(ui, "/ui/daemon/start", csrf_of(html), interval_seconds="")
        assert "pipeline quick every 45 s" in html, html[:2000]
