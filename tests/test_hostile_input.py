"""Values at the edges of their types: a 422 naming the field and its range, nothing stored.

And the other way round: a stored row that breaks the rules (an older version's, a hand
edit) never turns a list into a 500; it reads back in status `error` with its reason, can
be fixed with a PATCH, and can be deleted. The real app on a real socket, a real SQLite
file edited with sqlite3 behind the app's back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cronmgr.controller.app import create_app
from cronmgr.controller.keys import STORE
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.models import Run, RunStatus, StepResult, Trigger, new_id, utcnow

Client = TestClient[Any, Any]
ClientFactory = Callable[..., Awaitable[Client]]

SCHEDULE = {
    "name": "edge",
    "pipeline": "nightly",
    "schedule_type": "interval",
    "interval_seconds": 60,
}
TARGET = {"name": "edge", "url": "http://127.0.0.1:9/x"}
NESTED = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home with one pipeline."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "nightly.toml").write_text(
        '[[steps]]\nname = "a"\ncommand = ["true"]\n'
    )
    return load_settings(env={}, home=tmp_path)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    """The real app on a real socket, with its token."""
    app = create_app(settings)
    token = settings.token_file.read_text().strip()
    return await aiohttp_client(app, headers={"Authorization": f"Bearer {token}"})


async def call(client: Client, method: str, path: str, status: int, **kwargs: Any) -> Any:
    """One request; assert its status, return the JSON body."""
    async with client.request(method, path, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def refused(
    client: Client, method: str, path: str, field: str, *words: str, **kw: Any
) -> None:
    """A 422 in the uniform error shape that names `field` and says `words`."""
    body = await call(client, method, path, 422, **kw)
    assert body["error"] is True and f"{field}: " in body["detail"], body
    for word in words:
        assert word in body["detail"], body["detail"]
    assert any(e["field"].startswith(field) for e in body["errors"]), body["errors"]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"duration_seconds": 1e300}, "duration_seconds", ["315576000"]),
        ({"interval_seconds": 1e308}, "interval_seconds", ["315576000"]),
        ({"interval_seconds": 0.001}, "interval_seconds", ["0.1"]),
        ({"misfire_grace_seconds": 1e300}, "misfire_grace_seconds", ["315576000"]),
        ({"cooldown_seconds": 2**63}, "cooldown_seconds", ["315576000"]),
        ({"max_runs": 2**63}, "max_runs", ["1000000000"]),
        ({"failure_threshold": 2**64}, "failure_threshold", []),
        ({"start_at": "0001-01-01T00:00:00+14:00"}, "start_at", ["1970-01-01 to 9998-12-31"]),
        ({"end_at": "9999-12-31T23:59:59-14:00"}, "end_at", ["1970-01-01 to 9998-12-31"]),
        ({"start_at": 1700000000}, "start_at", ["ISO 8601"]),
        (
            {"start_at": "9998-06-01T00:00:00Z", "duration_seconds": 315576000},
            "duration_seconds",
            ["9998-12-31"],
        ),
        ({"name": "a\x00b"}, "name", ["control characters"]),
        ({"name": "   "}, "name", ["blank"]),
        ({"timezone": "x" * 5000}, "timezone", []),
    ],
)
async def test_a_schedule_out_of_range_is_422_naming_the_field_and_nothing_is_stored(
    client: Client, change: dict[str, Any], field: str, words: list[str]
) -> None:
    """Each bound answers 422 with the field and its range; the list stays empty and 200."""
    await refused(client, "POST", "/api/v1/schedules", field, *words, json={**SCHEDULE, **change})
    assert await call(client, "GET", "/api/v1/schedules", 200) == []


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"body_template": NESTED}, "body_template", ["nested"]),
        (
            {"body_template": "{% for a in b %}" * 30 + "{% endfor %}" * 30},
            "body_template",
            ["blocks"],
        ),
        ({"timeout_seconds": 1e300}, "timeout_seconds", ["300"]),
        ({"headers": {"X-A": "a\x01b"}}, "headers", ["control characters"]),
        ({"headers": {f"X-{i}": "v" for i in range(101)}}, "headers", ["100"]),
        ({"name": "tab\there"}, "name", ["control characters"]),
    ],
)
async def test_a_target_out_of_range_is_422_naming_the_field(
    client: Client, change: dict[str, Any], field: str, words: list[str]
) -> None:
    """Templates are checked for depth and compiled when saved; headers and names bounded."""
    await refused(client, "POST", "/api/v1/targets", field, *words, json={**TARGET, **change})
    assert await call(client, "GET", "/api/v1/targets", 200) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("offset=9223372036854775808", "offset"),
        ("offset=-1", "offset"),
        ("since=0001-01-01T00:00:00%2B14:00", "since"),
        ("since=9999-12-31T23:59:59-14:00", "since"),
        ("since=0.5", "since"),
        ("limit=1e300", "limit"),
        ("schedule_id=" + "x" * 300, "schedule_id"),
    ],
)
async def test_a_run_query_out_of_range_is_422(client: Client, query: str, field: str) -> None:
    """Paging and time filters are bounded before they reach SQL or datetime arithmetic."""
    await refused(client, "GET", f"/api/v1/runs?{query}", field)


async def test_log_and_incident_times_are_bounded_too(client: Client) -> None:
    """The same time rule on every `since`."""
    for path in ("/api/v1/logs", "/api/v1/incidents"):
        await refused(client, "GET", f"{path}?since=0001-01-01T00:00:00%2B14:00", "since")


async def test_a_patch_needs_a_body(client: Client) -> None:
    """A PATCH with no body is a mistake, not an empty merge patch."""
    schedule = await call(client, "POST", "/api/v1/schedules", 201, json=SCHEDULE)
    body = await call(client, "PATCH", f"/api/v1/schedules/{schedule['id']}", 400)
    assert "needs a JSON object body" in body["detail"]


async def test_the_document_shows_the_ranges(client: Client) -> None:
    """The bounds come from the models, so /openapi.json states them."""
    document = await call(client, "GET", "/openapi.json", 200)
    spec = document["components"]["schemas"]["ScheduleSpec"]["properties"]
    interval = spec["interval_seconds"]["anyOf"][0]
    assert interval["minimum"] == 0.1 and interval["maximum"] == 315576000
    assert "pattern" in spec["start_at"]["anyOf"][0]
    assert spec["max_runs"]["anyOf"][0]["maximum"] == 1_000_000_000


def _edit_row(settings: Settings, schedule_id: str, sql: str, *params: Any) -> None:
    with sqlite3.connect(settings.state_path / "cronmgr.db") as db:
        db.execute(f"UPDATE schedules SET {sql} WHERE id = ?", (*params, schedule_id))


@pytest.mark.parametrize(
    ("sql", "params", "words"),
    [
        ("duration_seconds = ?", (1e300,), ["duration_seconds"]),
        ("interval_seconds = ?", (1e308,), ["interval_seconds"]),
        ("misfire_grace_seconds = ?", (1e300,), ["misfire_grace_seconds"]),
        ("misfire_policy = ?", ("sometimes",), ["sometimes"]),
        ("start_at = ?", ("not a time",), ["not a time"]),
        ("timezone = ?", ("Mars/Base",), ["Mars/Base"]),
        ("name = ?", ("a\x00b",), ["name"]),
    ],
)
async def test_a_stored_row_that_breaks_the_rules_reads_as_an_error_and_can_be_deleted(
    client: Client, settings: Settings, sql: str, params: tuple[Any, ...], words: list[str]
) -> None:
    """List and get answer 200; the item says `error` and why; DELETE removes it."""
    good = await call(client, "POST", "/api/v1/schedules", 201, json={**SCHEDULE, "name": "good"})
    bad = await call(client, "POST", "/api/v1/schedules", 201, json={**SCHEDULE, "name": "bad"})
    _edit_row(settings, bad["id"], sql, *params)
    listed = {s["id"]: s for s in await call(client, "GET", "/api/v1/schedules", 200)}
    assert listed[good["id"]]["status"] == "active"
    shown = listed[bad["id"]]
    assert shown["status"] == "error", shown
    assert shown["status_reason"].startswith("its stored definition can't be used")
    for word in words:
        assert word in shown["status_reason"], shown["status_reason"]
    assert (await call(client, "GET", f"/api/v1/schedules/{bad['id']}", 200))["status"] == "error"
    await call(client, "DELETE", f"/api/v1/schedules/{bad['id']}", 200)
    remaining = await call(client, "GET", "/api/v1/schedules", 200)
    assert [s["id"] for s in remaining] == [good["id"]]


async def test_a_patch_that_fixes_a_bad_row_makes_it_active_again(
    client: Client, settings: Settings
) -> None:
    """The reason names the field; a PATCH of that field passes validation and ends the error."""
    bad = await call(client, "POST", "/api/v1/schedules", 201, json=SCHEDULE)
    _edit_row(settings, bad["id"], "duration_seconds = ?", 1e300)
    await refused(
        client, "PATCH", f"/api/v1/schedules/{bad['id']}", "duration_seconds", json={"max_runs": 3}
    )
    fixed = await call(
        client, "PATCH", f"/api/v1/schedules/{bad['id']}", 200, json={"duration_seconds": 600}
    )
    assert fixed["status"] == "active" and fixed["duration_seconds"] == 600


@pytest.mark.parametrize(
    ("sql", "params", "words"),
    [
        ("headers = ?", ("not json",), ["JSONDecodeError"]),
        ("timeout_seconds = ?", (1e300,), ["timeout_seconds"]),
        ("body_template = ?", (NESTED,), ["body_template", "nested"]),
        ("url = ?", ("ftp://x",), ["url"]),
    ],
)
async def test_a_stored_target_that_breaks_the_rules_reads_as_an_error_and_can_be_deleted(
    client: Client, settings: Settings, sql: str, params: tuple[Any, ...], words: list[str]
) -> None:
    """The list answers 200; the bad target says `error` and why; DELETE removes it."""
    good = await call(client, "POST", "/api/v1/targets", 201, json={**TARGET, "name": "good"})
    bad = await call(client, "POST", "/api/v1/targets", 201, json={**TARGET, "name": "bad"})
    assert good["status"] == "ok" and good["status_reason"] is None
    with sqlite3.connect(settings.state_path / "cronmgr.db") as db:
        db.execute(f"UPDATE targets SET {sql} WHERE id = ?", (*params, bad["id"]))
    listed = {t["id"]: t for t in await call(client, "GET", "/api/v1/targets", 200)}
    assert listed[good["id"]]["status"] == "ok"
    shown = listed[bad["id"]]
    assert shown["status"] == "error", shown
    for word in words:
        assert word in shown["status_reason"], shown["status_reason"]
    await call(client, "DELETE", f"/api/v1/targets/{bad['id']}", 200)
    assert [t["id"] for t in await call(client, "GET", "/api/v1/targets", 200)] == [good["id"]]


async def test_a_start_or_restart_naming_an_unknown_pipeline_is_422_and_starts_nothing(
    client: Client, settings: Settings
) -> None:
    """Checked before anything is launched or stopped: 422 naming `pipeline`, no daemon."""
    for path in ("/api/cron/start", "/api/cron/restart"):
        await refused(
            client, "POST", path, "pipeline", "unknown pipeline 'nope'", json={"pipeline": "nope"}
        )
    status = await call(client, "GET", "/api/cron/status", 200)
    assert status["is_running"] is False


async def test_a_stored_run_that_cant_be_read_lists_as_failed_saying_why(
    client: Client, settings: Settings
) -> None:
    """A run row with an unknown status, a step row with broken output: 200, failed, why."""
    store = client.app[STORE]
    now = utcnow()
    run = Run(new_id(), "pipeline:nightly", now, Trigger.SCHEDULE, status=RunStatus.SUCCEEDED)
    await store.insert_run(run)
    await store.insert_step_result(run.id, 0, StepResult("a", RunStatus.SUCCEEDED, now, 3))
    with sqlite3.connect(settings.state_path / "cronmgr.db") as db:
        db.execute("UPDATE runs SET status = 'weird' WHERE id = ?", (run.id,))
        db.execute("UPDATE step_results SET output_tail = 'not json' WHERE run_id = ?", (run.id,))
    (listed,) = await call(client, "GET", "/api/v1/runs", 200)
    assert listed["id"] == run.id and listed["status"] == "failed"
    assert listed["error"].startswith("its stored row can't be read") and "weird" in listed["error"]
    detail = await call(client, "GET", f"/api/v1/runs/{run.id}", 200)
    (attempt,) = detail["steps"][0]["attempts"]
    assert attempt["status"] == "failed" and "can't be read" in attempt["error"]


async def test_a_patch_naming_an_unknown_field_is_422_even_with_null(client: Client) -> None:
    """`{"colour": null}` would delete nothing as a merge patch: it is refused, not ignored."""
    target = await call(client, "POST", "/api/v1/targets", 201, json=TARGET)
    schedule = await call(client, "POST", "/api/v1/schedules", 201, json=SCHEDULE)
    for path in (f"/api/v1/targets/{target['id']}", f"/api/v1/schedules/{schedule['id']}"):
        for body in ({"colour": None}, {"": None}):
            await refused(client, "PATCH", path, next(iter(body)), "Extra inputs", json=body)
