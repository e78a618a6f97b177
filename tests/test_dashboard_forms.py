"""The dashboard's create, edit and delete forms for targets and schedules, a target's page
(its response-time chart, its availability, "send now") and the incidents' causes.

The real app on a real socket, read as plain HTML with no script run; runs are written
the way the daemon writes them, through the store, except for "send now", where a real
controller starts a real daemon that sends to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import html as markup
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import Controller, make_home, until
from test_dashboard import (
    Client,
    ClientFactory,
    api_headers,
    csrf_of,
    finished_run,
    logged_in,
    new_schedule,
    new_target,
    page,
    store_of,
)

from cronmgr.controller.app import create_app
from cronmgr.controller.dashboard.incidents import cause_text
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.models import RunStatus, new_id, utcnow
from cronmgr.store.records import Incident

NOT_RUNNING = "the daemon is not running: this schedule fires once it starts"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home of its own with the demo and the test pipelines."""
    return load_settings(env={}, home=make_home(tmp_path))


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    """The real app on a real socket."""
    return await aiohttp_client(create_app(settings))


async def post(client: Client, path: str, csrf: str, **fields: str) -> tuple[int, str, str]:
    """Submit a form (redirects followed): the status, the final path and the HTML."""
    async with client.post(path, data={"csrf_token": csrf, **fields}) as resp:
        return resp.status, resp.url.path, await resp.text()


async def api_get(client: Client, settings: Settings, path: str) -> Any:
    async with client.get(path, headers=api_headers(settings)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def api_refusal(client: Client, settings: Settings, path: str, body: Any) -> str:
    """The API's 422 detail for `body`: what the form must say too."""
    async with client.post(path, json=body, headers=api_headers(settings)) as resp:
        assert resp.status == 422, await resp.text()
        detail: str = (await resp.json())["detail"]
        return detail


def field_error(html: str, name: str) -> str:
    """The message the form shows next to field `name` (unescaped)."""
    found = re.search(rf'<p class="field-error" id="e-{re.escape(name)}">(.*?)</p>', html, re.S)
    assert found, f"no error shown at {name}"
    return markup.unescape(found.group(1))


def input_value(html: str, name: str) -> str:
    field_id = "f-" + name.replace(".", "-")
    found = re.search(rf'<input id="{field_id}" name="{re.escape(name)}"[^>]*>', html)
    assert found, f"no input {name}"
    value = re.search(r'value="([^"]*)"', found.group(0))
    return markup.unescape(value.group(1)) if value else ""


TARGET_FORM = {
    "name": "orders",
    "method": "POST",
    "url": "http://127.0.0.1:9/orders?key=s3cr3t",
    "headers": "Authorization: Bearer tok-s3cr3t\nX-Trace: on",
    "body_template": '{"run": "{{ run_id }}"}',
    "timeout_seconds": "5",
    "expected_status": "200, 202",
    "retry.max_attempts": "2",
    "verify_tls": "on",
}


# --- targets --------------------------------------------------------------------------------


async def test_a_target_is_created_from_the_form_as_the_api_would(
    client: Client, settings: Settings
) -> None:
    """Every field of the form lands in the target; the new target's page follows."""
    csrf = await logged_in(client, settings)
    form = await page(client, "/ui/targets/new")
    assert 'name="csrf_token"' in form and 'id="f-headers"' in form
    status, where, html = await post(client, "/ui/targets", csrf, **TARGET_FORM)
    assert status == 200 and where.startswith("/ui/targets/"), html[:500]
    assert "Target orders created" in html
    (target,) = await api_get(client, settings, "/api/v1/targets")
    assert where == f"/ui/targets/{target['id']}"
    assert target["method"] == "POST" and target["timeout_seconds"] == 5
    assert target["headers"] == {"Authorization": "***", "X-Trace": "on"}
    assert target["expected_status"] == [200, 202] and target["retry"]["max_attempts"] == 2
    assert target["follow_redirects"] is False and target["verify_tls"] is True
    stored = await store_of(client).get_target(target["id"])
    assert stored.headers["Authorization"] == "Bearer tok-s3cr3t"
    assert stored.body_template == '{"run": "{{ run_id }}"}'
    assert "tok-s3cr3t" not in html and "s3cr3t" not in html


async def test_an_invalid_field_shows_the_apis_message_and_keeps_the_input(
    client: Client, settings: Settings
) -> None:
    """A bad URL and a bad timeout: 422, the API's own words next to each field, the rest
    of what was typed still in the form, and nothing stored."""
    csrf = await logged_in(client, settings)
    bad = {**TARGET_FORM, "url": "ftp://example.test/x", "timeout_seconds": "900"}
    status, _, html = await post(client, "/ui/targets", csrf, **bad)
    assert status == 422
    detail = await api_refusal(
        client,
        settings,
        "/api/v1/targets",
        {"name": "orders", "url": "ftp://example.test/x", "timeout_seconds": "900"},
    )
    # The API says: invalid request body: url: <message>; timeout_seconds: <message>
    by_field = dict(part.split(": ", 1) for part in detail.split(": ", 1)[1].split("; "))
    assert field_error(html, "url") == by_field["url"]
    assert field_error(html, "timeout_seconds") == by_field["timeout_seconds"]
    assert detail in markup.unescape(html)
    assert input_value(html, "name") == "orders"
    assert input_value(html, "url") == "ftp://example.test/x"
    assert input_value(html, "expected_status") == "200, 202"
    assert "X-Trace: on" in html
    assert await api_get(client, settings, "/api/v1/targets") == []


async def test_a_header_line_without_a_colon_is_refused_at_the_headers(
    client: Client, settings: Settings
) -> None:
    csrf = await logged_in(client, settings)
    status, _, html = await post(
        client, "/ui/targets", csrf, **{**TARGET_FORM, "headers": "X-Trace on"}
    )
    assert status == 422
    assert field_error(html, "headers") == "line 1 has no colon: write Name: value"


async def test_a_taken_name_is_refused_at_the_name(client: Client, settings: Settings) -> None:
    await new_target(client, settings, name="orders")
    csrf = await logged_in(client, settings)
    status, _, html = await post(client, "/ui/targets", csrf, **TARGET_FORM)
    assert status == 422
    assert "orders" in field_error(html, "name")


async def test_forms_without_the_csrf_token_are_refused(client: Client, settings: Settings) -> None:
    """Create, edit, delete and send without the session's CSRF token: 403, nothing done."""
    await logged_in(client, settings)
    target = await new_target(client, settings)
    tid = target["id"]
    paths = (
        "/ui/targets",
        f"/ui/targets/{tid}/edit",
        f"/ui/targets/{tid}/delete",
        f"/ui/targets/{tid}/send",
        "/ui/schedules",
    )
    for path in paths:
        async with client.post(path, data={**TARGET_FORM, "csrf_token": "forged"}) as resp:
            assert resp.status == 403, path
            assert "CSRF" in await resp.text()
    (still,) = await api_get(client, settings, "/api/v1/targets")
    assert still["name"] == "health"
    assert await api_get(client, settings, "/api/v1/schedules") == []


async def test_a_target_is_edited_secrets_kept_and_a_header_removed(
    client: Client, settings: Settings
) -> None:
    """The edit form shows the secret as ***; saving it as shown keeps the stored value, a
    header taken out of the form goes, and a bad edit is refused with nothing changed."""
    target = await new_target(
        client,
        settings,
        headers={"Authorization": "Bearer tok-s3cr3t", "X-Old": "1"},
        body_template="hello",
    )
    csrf = await logged_in(client, settings)
    form = await page(client, f"/ui/targets/{target['id']}/edit")
    assert "Authorization: ***" in form and "tok-s3cr3t" not in form
    assert input_value(form, "name") == "health"
    edit = {
        "name": "health-2",
        "method": "GET",
        "url": target["url"],
        "headers": "Authorization: ***\nX-New: 2",
        "body_template": "",
        "timeout_seconds": "7.5",
        "expected_status": "",
        "retry.max_attempts": "3",
        "follow_redirects": "on",
    }
    status, where, html = await post(client, f"/ui/targets/{target['id']}/edit", csrf, **edit)
    assert status == 200 and where == f"/ui/targets/{target['id']}", html[:500]
    assert "Target health-2 saved" in html
    stored = await store_of(client).get_target(target["id"])
    assert stored.name == "health-2" and stored.timeout_seconds == 7.5
    assert stored.headers == {"Authorization": "Bearer tok-s3cr3t", "X-New": "2"}
    assert stored.body_template is None and stored.retry.max_attempts == 3
    assert stored.verify_tls is False

    bad = {**edit, "retry.max_attempts": "0"}
    status, _, html = await post(client, f"/ui/targets/{target['id']}/edit", csrf, **bad)
    assert status == 422
    assert "greater than or equal to 1" in field_error(html, "retry-max_attempts")
    assert input_value(html, "retry.max_attempts") == "0"
    assert (await store_of(client).get_target(target["id"])).retry.max_attempts == 3


async def test_delete_asks_first_and_shows_the_apis_409_while_schedules_use_it(
    client: Client, settings: Settings
) -> None:
    target = await new_target(client, settings)
    schedule = await new_schedule(client, settings, target_id=target["id"])
    csrf = await logged_in(client, settings)
    confirm = await page(client, f"/ui/targets/{target['id']}/delete")
    assert "Delete target health?" in confirm and "every minute" in confirm
    async with client.delete(
        f"/api/v1/targets/{target['id']}", headers=api_headers(settings)
    ) as resp:
        assert resp.status == 409
        api_message = (await resp.json())["detail"]
    status, _, html = await post(client, f"/ui/targets/{target['id']}/delete", csrf)
    assert status == 409
    assert api_message in markup.unescape(html)
    assert await api_get(client, settings, f"/api/v1/targets/{target['id']}")

    async with client.delete(
        f"/api/v1/schedules/{schedule['id']}", headers=api_headers(settings)
    ) as resp:
        assert resp.status == 200
    status, where, html = await post(client, f"/ui/targets/{target['id']}/delete", csrf)
    assert status == 200 and where == "/ui/targets"
    assert "Target health deleted" in html
    assert await api_get(client, settings, "/api/v1/targets") == []


# --- schedules ------------------------------------------------------------------------------


SCHEDULE_FORM = {
    "name": "poll",
    "target_id": "",
    "pipeline": "quick",
    "schedule_type": "interval",
    "interval_seconds": "30",
    "cron_expression": "",
    "run_at": "",
    "timezone": "UTC",
    "start_at": "",
    "end_at": "",
    "max_runs": "",
    "overlap_policy": "skip",
    "misfire_policy": "skip",
}


async def test_a_schedule_is_created_with_the_note_that_no_daemon_runs(
    client: Client, settings: Settings
) -> None:
    csrf = await logged_in(client, settings)
    form = await page(client, "/ui/schedules/new")
    assert '<option value="quick"' in form
    status, where, html = await post(client, "/ui/schedules", csrf, **SCHEDULE_FORM)
    assert status == 200 and where == "/ui/schedules", html[:500]
    assert f"Schedule poll created; {NOT_RUNNING}" in html
    (schedule,) = await api_get(client, settings, "/api/v1/schedules")
    assert schedule["pipeline"] == "quick" and schedule["interval_seconds"] == 30
    assert schedule["target_id"] is None
    assert f"/ui/schedules/{schedule['id']}/edit" in html


async def test_a_schedule_with_both_or_neither_target_and_pipeline_says_what_the_api_says(
    client: Client, settings: Settings
) -> None:
    target = await new_target(client, settings)
    csrf = await logged_in(client, settings)
    both = {**SCHEDULE_FORM, "target_id": target["id"]}
    status, _, html = await post(client, "/ui/schedules", csrf, **both)
    assert status == 422
    assert field_error(html, "target_id") == "give target_id or pipeline, not both"
    cron = {**SCHEDULE_FORM, "schedule_type": "cron", "cron_expression": "61 * * * *"}
    status, _, html = await post(client, "/ui/schedules", csrf, **cron)
    assert status == 422
    detail = await api_refusal(
        client,
        settings,
        "/api/v1/schedules",
        {
            "name": "poll",
            "pipeline": "quick",
            "schedule_type": "cron",
            "cron_expression": "61 * * * *",
        },
    )
    assert field_error(html, "cron_expression") == detail.split("cron_expression: ", 1)[1]
    assert input_value(html, "cron_expression") == "61 * * * *"
    assert await api_get(client, settings, "/api/v1/schedules") == []


async def test_a_schedule_is_edited_and_deleted_after_confirmation(
    client: Client, settings: Settings
) -> None:
    target = await new_target(client, settings)
    schedule = await new_schedule(client, settings, target_id=target["id"])
    csrf = await logged_in(client, settings)
    form = await page(client, f"/ui/schedules/{schedule['id']}/edit")
    assert input_value(form, "interval_seconds") == "60"
    change = {
        **SCHEDULE_FORM,
        "name": "nightly",
        "pipeline": "",
        "target_id": target["id"],
        "schedule_type": "cron",
        "cron_expression": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "max_runs": "5",
    }
    status, where, html = await post(client, f"/ui/schedules/{schedule['id']}/edit", csrf, **change)
    assert status == 200 and "Schedule nightly saved" in html, html[:500]
    stored = await api_get(client, settings, f"/api/v1/schedules/{schedule['id']}")
    assert stored["schedule_type"] == "cron" and stored["cron_expression"] == "0 3 * * *"
    assert stored["interval_seconds"] is None and stored["max_runs"] == 5
    assert stored["timezone"] == "Europe/Berlin"

    bad = {**change, "timezone": "Mars/Olympus"}
    status, _, html = await post(client, f"/ui/schedules/{schedule['id']}/edit", csrf, **bad)
    assert status == 422 and "Mars/Olympus" in field_error(html, "timezone")

    confirm = await page(client, f"/ui/schedules/{schedule['id']}/delete")
    assert "Delete schedule nightly?" in confirm
    status, where, html = await post(client, f"/ui/schedules/{schedule['id']}/delete", csrf)
    assert status == 200 and where == "/ui/schedules" and "Schedule nightly deleted" in html
    assert await api_get(client, settings, "/api/v1/schedules") == []


# --- a target's page ------------------------------------------------------------------------


async def test_the_target_page_draws_its_runs_and_their_availability(
    client: Client, settings: Settings
) -> None:
    """Three succeeded runs and one failed one: four points (one marked failed), and 75 %
    over 24 h and over 7 d; a run older than a day counts only in the 7 days."""
    target = await new_target(client, settings)
    job = f"target:{target['id']}"
    store = store_of(client)
    await logged_in(client, settings)
    empty = await page(client, f"/ui/targets/{target['id']}")
    assert empty.count("no runs") == 2 and "<svg" not in empty
    for seconds, status in ((0.1, RunStatus.SUCCEEDED), (0.3, RunStatus.SUCCEEDED),
                            (0.2, RunStatus.FAILED), (0.15, RunStatus.SUCCEEDED)):  # fmt: skip
        await finished_run(store, job, None, status, seconds)
    html = await page(client, f"/ui/targets/{target['id']}")
    chart = html[html.index('<svg class="chart"') : html.index("</svg>")]
    assert chart.count('<circle class="point ok"') == 3
    assert chart.count('<path class="point failed"') == 1
    assert "<polyline" in chart and "500 ms" in chart  # 300 ms rounds up to a 500 ms scale
    day = html[html.index('id="availability-24h"') :]
    assert "75.0 %" in day[:300] and "3 of 4 runs succeeded" in day[:400]
    week = html[html.index('id="availability-7d"') :]
    assert "75.0 %" in week[:300]


async def test_the_incident_cause_names_its_error_class_once(
    client: Client, settings: Settings
) -> None:
    assert cause_text("connection", "connection: refused") == "connection: refused"
    assert cause_text("exit_code", "step 'a' exited with 2") == "exit_code: step 'a' exited with 2"
    assert cause_text("unknown", None) == "unknown"
    await logged_in(client, settings)
    started = utcnow() - timedelta(minutes=5)
    incident = Incident(
        new_id(),
        "target:t1",
        started,
        started + timedelta(minutes=1),
        failed_runs=3,
        error_class="connection",
        cause="connection: cannot connect to 127.0.0.1:9: Connection refused",
    )
    assert await store_of(client).open_incident(incident)
    html = await page(client, "/ui/incidents")
    assert "connection: cannot connect to 127.0.0.1:9" in html
    assert "connection: connection:" not in html


# --- send now, through a real daemon --------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """A real HTTP server on 127.0.0.1 whose answer holds markup, to be shown escaped."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "note": "<b>bold</b>"}, status=201)

    app = web.Application()
    app.router.add_post("/hook", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_send_now_shows_the_status_time_and_body_of_a_real_answer(
    controller_factory: Callable[..., Controller], upstream: TestServer
) -> None:
    """Without a daemon "send now" says to start it; with one, the page shows the real
    answer: its status, how long it took and its body, escaped."""
    controller = controller_factory()
    jar = aiohttp.CookieJar(unsafe=True)  # an IP address as the host keeps the cookie
    async with aiohttp.ClientSession(controller.url, cookie_jar=jar) as http:
        async with http.post(
            "/api/v1/targets",
            json={
                "name": "hook",
                "url": str(upstream.make_url("/hook")),
                "method": "POST",
                "expected_status": [201],
            },
            headers=controller.headers,
        ) as resp:
            target = await resp.json()
        async with http.get("/ui/login") as resp:
            nonce = csrf_of(await resp.text())
        async with http.post(
            "/ui/login", data={"csrf_token": nonce, "token": controller.token}
        ) as resp:
            csrf = csrf_of(await resp.text())
        send = f"/ui/targets/{target['id']}/send"
        async with http.post(send, data={"csrf_token": csrf}) as resp:
            html = await resp.text()
        assert "the daemon is not running, so target &#39;hook&#39; cannot be sent" in html

        async with http.post(
            "/api/cron/start", json={"interval_seconds": 60}, headers=controller.headers
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(send, data={"csrf_token": csrf}) as resp:
            assert resp.status == 200 and "sent=" in str(resp.url)
            html = await resp.text()
        assert "Target hook sent" in html
        assert 'id="sent-status">201<' in html
        took = re.search(r'id="sent-time">(\d+) ms', html)
        assert took and int(took.group(1)) < 10_000
        body = html[html.index('id="sent-body"') :]
        assert "&lt;b&gt;bold&lt;/b&gt;" in body[:300] and "<b>bold" not in html

        async def charted() -> bool:
            async with http.get(f"/ui/targets/{target['id']}") as resp:
                return '<circle class="point ok"' in await resp.text()

        await until(charted, what="the sent run on the chart")
