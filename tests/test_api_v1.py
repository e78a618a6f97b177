"""The /api/v1 resources on the real app, a real socket and a real SQLite file.

The seed's curl examples run as written (plus the token); every validation rule answers 422
naming its field; lists are bare arrays paged by limit/offset; secrets never come back.
Runs are written straight through the store: the engine is not what is tested here.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cronmgr.controller.app import create_app
from cronmgr.controller.keys import STORE
from cronmgr.core.config import Settings, load_settings
from cronmgr.core.models import (
    ErrorType,
    Run,
    RunStatus,
    ScheduleStatus,
    StepResult,
    Trigger,
    new_id,
    utcnow,
)
from cronmgr.store import Store
from cronmgr.store.records import Progress

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
Client = TestClient[Any, Any]

# The seed-001 bodies, verbatim.
SEED_TARGET = {
    "name": "Example API",
    "url": "https://httpbin.org/post",
    "method": "POST",
    "headers": {"Content-Type": "application/json"},
    "body_template": '{"message": "Hello from scheduler"}',
    "timeout_seconds": 30,
}
SEED_INTERVAL = {
    "name": "Every 10 seconds",
    "schedule_type": "interval",
    "interval_seconds": 10,
    "duration_seconds": 300,
}
SEED_CRON = {
    "name": "Every 5 minutes",
    "schedule_type": "cron",
    "cron_expression": "*/5 * * * *",
    "max_runs": 100,
}
PIPELINE = """\
description = "two steps"
[[steps]]
name = "first"
command = ["true"]
env = { API_PASSWORD = "hunter2-value", GREETING = "hello-value" }
[[steps]]
name = "second"
shell = "echo done"
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home of its own with one good pipeline and one broken file."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "nightly.toml").write_text(PIPELINE)
    (pipelines / "broken.toml").write_text("[[steps]]\nname = 'x'\n")
    return load_settings(env={}, home=tmp_path)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, settings: Settings) -> Client:
    """The real app on a real socket, with the generated token sent on every call."""
    app = create_app(settings)
    token = settings.token_file.read_text().strip()
    return await aiohttp_client(app, headers={"Authorization": f"Bearer {token}"})


def store_of(client: Client) -> Store:
    """The app's own store, to write runs and look behind the API."""
    store: Store = client.app[STORE]
    return store


async def call(client: Client, method: str, path: str, status: int, **kwargs: Any) -> Any:
    """One request; assert its status and return the JSON body."""
    async with client.request(method, path, **kwargs) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def error(client: Client, method: str, path: str, status: int, **kwargs: Any) -> Any:
    """One request that must fail with the uniform error body."""
    body = await call(client, method, path, status, **kwargs)
    assert body["error"] is True and body["detail"] and "timestamp" in body
    assert isinstance(body["errors"], list)
    return body


async def new_target(client: Client, **fields: Any) -> dict[str, Any]:
    """Create a target (the seed's, changed by `fields`)."""
    body: dict[str, Any] = await call(
        client, "POST", "/api/v1/targets", 201, json={**SEED_TARGET, **fields}
    )
    return body


async def new_schedule(client: Client, **fields: Any) -> dict[str, Any]:
    """Create a schedule (the seed's interval one, changed by `fields`)."""
    body: dict[str, Any] = await call(
        client, "POST", "/api/v1/schedules", 201, json={**SEED_INTERVAL, **fields}
    )
    return body


# --- the seed's examples ----------------------------------------------------------------


async def test_seed_curl_examples_work_as_written(client: Client) -> None:
    """Create target, interval and cron schedules; list and filter runs; pause, resume, delete."""
    target = await call(client, "POST", "/api/v1/targets", 201, json=SEED_TARGET)
    assert {k: target[k] for k in SEED_TARGET} == SEED_TARGET
    assert target["id"] and target["expected_status"] == [] and target["retry"]["max_attempts"]

    interval = await call(
        client, "POST", "/api/v1/schedules", 201, json={**SEED_INTERVAL, "target_id": target["id"]}
    )
    assert interval["status"] == "active" and interval["interval_seconds"] == 10
    created = datetime.fromisoformat(interval["created_at"])
    assert datetime.fromisoformat(interval["window_end"]) == created + timedelta(seconds=300)
    cron = await call(
        client, "POST", "/api/v1/schedules", 201, json={**SEED_CRON, "target_id": target["id"]}
    )
    assert cron["cron_expression"] == "*/5 * * * *" and cron["max_runs"] == 100

    assert await call(client, "GET", "/api/v1/runs", 200) == []
    assert await call(client, "GET", f"/api/v1/runs?schedule_id={cron['id']}", 200) == []
    assert await call(client, "GET", "/api/v1/runs?status=failed", 200) == []

    sid = interval["id"]
    paused = await call(client, "POST", f"/api/v1/schedules/{sid}/pause", 200)
    assert paused["status"] == "paused"
    resumed = await call(client, "POST", f"/api/v1/schedules/{sid}/resume", 200)
    assert resumed["status"] == "active"
    gone = await call(client, "DELETE", f"/api/v1/schedules/{sid}", 200)
    assert gone["success"] is True and gone["id"] == sid
    await error(client, "GET", f"/api/v1/schedules/{sid}", 404)
    names = [s["name"] for s in await call(client, "GET", "/api/v1/schedules", 200)]
    assert names == ["Every 5 minutes"]


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        ({"schedule_type": "cron", "cron_expression": "*/5 * * *"}, "cron_expression", ""),
        ({"schedule_type": "cron", "cron_expression": "61 * * * *"}, "cron_expression", ""),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone", "unknown timezone"),
        ({"interval_seconds": 0}, "interval_seconds", "greater than 0"),
        ({"interval_seconds": -5}, "interval_seconds", "greater than 0"),
        (
            {"start_at": "2100-01-02T00:00:00Z", "end_at": "2100-01-01T00:00:00Z"},
            "end_at",
            "must be after start_at",
        ),
        ({"interval_seconds": None}, "interval_seconds", "required when schedule_type is interval"),
        ({"cron_expression": "* * * * *"}, "cron_expression", "only used when schedule_type is"),
        ({"schedule_type": "once"}, "run_at", "required when schedule_type is once"),
        ({"pipeline": "nightly"}, "target_id", "not both"),
        ({"target_id": None}, "target_id", "required"),
        ({"target_id": "no-such-target"}, "target_id", "no target has the id"),
        ({"target_id": None, "pipeline": "nope"}, "pipeline", "unknown pipeline"),
        ({"target_id": None, "pipeline": "broken"}, "pipeline", "could not be loaded"),
        ({"target_id": None, "pipeline": "../etc"}, "pipeline", "pattern"),
        ({"max_runs": 0}, "max_runs", "greater than or equal to 1"),
        ({"duration_seconds": 0}, "duration_seconds", "greater than 0"),
        ({"jitter_seconds": -1}, "jitter_seconds", "greater than or equal to 0"),
        ({"misfire_policy": "sometimes"}, "misfire_policy", "skip"),
        ({"schedule_type": "hourly"}, "schedule_type", "interval"),
        ({"start_at": "tomorrow"}, "start_at", "datetime"),
        (
            {"timezone": "Europe/Berlin", "start_at": "2100-03-28T02:30:00"},
            "start_at",
            "does not exist in Europe/Berlin",
        ),
        ({"is_active": True}, "is_active", "Extra inputs"),
    ],
)
async def test_invalid_schedules_get_422_naming_the_field(
    client: Client, change: dict[str, Any], field: str, needle: str
) -> None:
    """Each broken rule is named, field first, in the detail and in the errors list."""
    target = await new_target(client)
    body = {**SEED_INTERVAL, "target_id": target["id"], **change}
    body = {k: v for k, v in body.items() if v is not None}
    result = await error(client, "POST", "/api/v1/schedules", 422, json=body)
    assert f"{field}: " in result["detail"] and needle in result["detail"], result["detail"]
    assert any(e["field"] == field for e in result["errors"]), result["errors"]
    assert await call(client, "GET", "/api/v1/schedules", 200) == []


async def test_cron_errors_say_which_cron_field_is_wrong(client: Client) -> None:
    """An out-of-range minute is explained, not just refused."""
    target = await new_target(client)
    body = {**SEED_CRON, "target_id": target["id"], "cron_expression": "61 * * * *"}
    result = await error(client, "POST", "/api/v1/schedules", 422, json=body)
    assert "minute" in result["detail"]


@pytest.mark.parametrize(
    ("change", "field", "needle"),
    [
        ({"url": "ftp://example.com/file"}, "url", "scheme must be http or https"),
        ({"url": "example.com/path"}, "url", "scheme must be http or https"),
        ({"url": "https:///path"}, "url", "must name a host"),
        ({"url": "https://exa mple.com"}, "url", "spaces"),
        ({"method": "FETCH"}, "method", "GET"),
        ({"timeout_seconds": 0}, "timeout_seconds", "greater than 0"),
        ({"timeout_seconds": 301}, "timeout_seconds", "less than or equal to 300"),
        ({"expected_status": [200, 99]}, "expected_status.1", "greater than or equal to 100"),
        ({"body_template": "{{ run_id "}, "body_template", "line 1"),
        ({"body_template": "{% if x %}"}, "body_template", "line 1"),
        (
            {"assertions": [{"type": "body_regex", "value": "([a-z"}]},
            "assertions.0.value",
            "not a valid regular expression",
        ),
        ({"assertions": [{"type": "json_field", "value": 1}]}, "assertions.0.path", "required"),
        (
            {"assertions": [{"type": "body_contains", "value": "x", "path": "a.b"}]},
            "assertions.0.path",
            "only used by json_field",
        ),
        ({"assertions": [{"type": "max_latency_ms", "value": -1}]}, "assertions.0.value", "> 0"),
        ({"assertions": [{"type": "status_is", "value": 1}]}, "assertions.0.type", "body_regex"),
        ({"retry": {"max_attempts": 11}}, "retry.max_attempts", "less than or equal to 10"),
        (
            {"retry": {"backoff_base_seconds": 10, "backoff_max_seconds": 1}},
            "retry.backoff_max_seconds",
            "backoff_base_seconds",
        ),
        ({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "headers", "single line"),
        ({"headers": {"Bad Name": "x"}}, "headers", "not a valid header name"),
        ({"headers": {"Authorization": "***"}}, "headers", "hide a secret"),
        ({"name": ""}, "name", "at least 1 character"),
        ({"name": "x" * 201}, "name", "at most 200 characters"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
async def test_invalid_targets_get_422_naming_the_field(
    client: Client, change: dict[str, Any], field: str, needle: str
) -> None:
    """URL scheme, method, template syntax, regexes, assertions and retry are all checked."""
    result = await error(client, "POST", "/api/v1/targets", 422, json={**SEED_TARGET, **change})
    assert f"{field}: " in result["detail"] and needle in result["detail"], result["detail"]
    assert any(e["field"] == field for e in result["errors"]), result["errors"]


async def test_unreadable_bodies_are_400(client: Client) -> None:
    """Malformed JSON and non-object bodies are 400, not 422 or 500."""
    for data in (b"{name", b"[1, 2]"):
        await error(client, "POST", "/api/v1/targets", 400, data=data)


async def test_method_is_accepted_in_any_case_and_stored_upper_case(client: Client) -> None:
    """`"method": "post"` is POST; a full assertion list round-trips."""
    assertions = [
        {"type": "body_contains", "value": "ok"},
        {"type": "body_regex", "value": "^\\{"},
        {"type": "json_field", "value": {"a": [1]}, "path": "data.items.0"},
        {"type": "max_latency_ms", "value": 1500},
    ]
    target = await new_target(client, method="post", assertions=assertions)
    assert target["method"] == "POST" and target["assertions"] == assertions
    fetched = await call(client, "GET", f"/api/v1/targets/{target['id']}", 200)
    assert fetched == target


# --- not found, conflicts -----------------------------------------------------------------


async def test_unknown_ids_are_404_with_the_uniform_body(client: Client) -> None:
    """Every {id} route answers 404 for an id that does not exist."""
    for method, path in [
        ("GET", "/api/v1/targets/nope"),
        ("PATCH", "/api/v1/targets/nope"),
        ("DELETE", "/api/v1/targets/nope"),
        ("GET", "/api/v1/schedules/nope"),
        ("PATCH", "/api/v1/schedules/nope"),
        ("DELETE", "/api/v1/schedules/nope"),
        ("POST", "/api/v1/schedules/nope/pause"),
        ("POST", "/api/v1/schedules/nope/resume"),
        ("GET", "/api/v1/schedules/nope/next"),
        ("GET", "/api/v1/runs/nope"),
        ("GET", "/api/v1/pipelines/nope"),
    ]:
        body = await error(client, method, path, 404, json={})
        assert "nope" in body["detail"], (method, path)


async def test_duplicate_names_are_409(client: Client) -> None:
    """Target names and schedule names are unique, on create and on rename."""
    target = await new_target(client)
    await error(client, "POST", "/api/v1/targets", 409, json=SEED_TARGET)
    other = await new_target(client, name="Other")
    await error(
        client, "PATCH", f"/api/v1/targets/{other['id']}", 409, json={"name": "Example API"}
    )
    await new_schedule(client, target_id=target["id"])
    body = {**SEED_INTERVAL, "target_id": other["id"]}
    assert (
        "already exists"
        in (await error(client, "POST", "/api/v1/schedules", 409, json=body))["detail"]
    )


async def test_deleting_a_used_target_needs_cascade(client: Client) -> None:
    """409 while schedules use the target; `?cascade=true` deletes them and says which."""
    target = await new_target(client)
    first = await new_schedule(client, target_id=target["id"])
    second = await new_schedule(client, target_id=target["id"], name="Second")
    body = await error(client, "DELETE", f"/api/v1/targets/{target['id']}", 409)
    assert "cascade=true" in body["detail"]
    await call(client, "GET", f"/api/v1/targets/{target['id']}", 200)
    await error(client, "DELETE", f"/api/v1/targets/{target['id']}?cascade=maybe", 422)

    gone = await call(client, "DELETE", f"/api/v1/targets/{target['id']}?cascade=true", 200)
    assert sorted(gone["deleted_schedules"]) == sorted([first["id"], second["id"]])
    await error(client, "GET", f"/api/v1/schedules/{first['id']}", 404)
    await error(client, "GET", f"/api/v1/targets/{target['id']}", 404)

    unused = await new_target(client, name="Unused")
    gone = await call(client, "DELETE", f"/api/v1/targets/{unused['id']}", 200)
    assert gone["deleted_schedules"] == []


async def test_cascade_deletes_setting_deletes_as_the_api_scheduler_did(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """With `cascade_deletes = true` a plain DELETE takes the target's schedules along (their
    runs stay, still found by target); an explicit `?cascade=false` still answers 409."""
    settings = load_settings(env={"CRONMGR_CASCADE_DELETES": "true"}, home=tmp_path)
    app = create_app(settings)
    token = settings.token_file.read_text().strip()
    client = await aiohttp_client(app, headers={"Authorization": f"Bearer {token}"})
    target = await new_target(client)
    schedule = await new_schedule(client, target_id=target["id"])
    run = await record_run(store_of(client), schedule, RunStatus.SUCCEEDED, 0)

    body = await error(client, "DELETE", f"/api/v1/targets/{target['id']}?cascade=false", 409)
    assert "cascade=true" in body["detail"]
    gone = await call(client, "DELETE", f"/api/v1/targets/{target['id']}", 200)
    assert gone["success"] is True and gone["deleted_schedules"] == [schedule["id"]]
    await error(client, "GET", f"/api/v1/schedules/{schedule['id']}", 404)
    await error(client, "GET", f"/api/v1/targets/{target['id']}", 404)
    kept = await call(client, "GET", f"/api/v1/runs/{run.id}", 200)
    assert kept["schedule_id"] == schedule["id"] and kept["target_id"] == target["id"]
    found = await call(client, "GET", f"/api/v1/runs?target_id={target['id']}", 200)
    assert [r["id"] for r in found] == [run.id]


# --- PATCH ------------------------------------------------------------------------------


async def test_patch_target_merges_and_revalidates(client: Client) -> None:
    """Given fields change, null resets to the default, and the result must still be valid."""
    target = await new_target(client, retry={"max_attempts": 2, "jitter": False})
    path = f"/api/v1/targets/{target['id']}"
    patched = await call(
        client,
        "PATCH",
        path,
        200,
        json={"timeout_seconds": 5, "body_template": None, "retry": {"max_attempts": 4}},
    )
    assert patched["timeout_seconds"] == 5 and patched["body_template"] is None
    assert patched["retry"]["max_attempts"] == 4 and patched["retry"]["jitter"] is False
    assert patched["name"] == "Example API" and patched["created_at"] == target["created_at"]
    for bad, field in [
        ({"url": "file:///etc/passwd"}, "url"),
        ({"id": "other"}, "id"),
        ({"retry": {"backoff_base_seconds": 100}}, "retry.backoff_max_seconds"),
    ]:
        body = await error(client, "PATCH", path, 422, json=bad)
        assert body["errors"][0]["field"] == field
    assert (await call(client, "GET", path, 200)) == patched


async def test_patch_schedule_revalidates_the_merged_whole(client: Client) -> None:
    """A PATCH that breaks the schedule is a 422; switching kind drops the old kind's field."""
    target = await new_target(client)
    schedule = await new_schedule(client, target_id=target["id"])
    path = f"/api/v1/schedules/{schedule['id']}"

    body = await error(client, "PATCH", path, 422, json={"schedule_type": "cron"})
    assert body["errors"][0]["field"] == "cron_expression"
    body = await error(client, "PATCH", path, 422, json={"interval_seconds": 0})
    assert body["errors"][0]["field"] == "interval_seconds"
    body = await error(
        client,
        "PATCH",
        path,
        422,
        json={"start_at": "2100-01-02T00:00:00Z", "end_at": "2100-01-01T00:00:00Z"},
    )
    assert "end_at: must be after start_at" in body["detail"]
    await error(client, "PATCH", path, 422, json={"status": "active"})

    await call(client, "POST", f"{path}/pause", 200)
    cron = await call(
        client, "PATCH", path, 200, json={"schedule_type": "cron", "cron_expression": "0 * * * *"}
    )
    assert cron["interval_seconds"] is None and cron["cron_expression"] == "0 * * * *"
    assert cron["status"] == "paused" and cron["duration_seconds"] == 300
    assert cron["updated_at"] >= schedule["updated_at"]

    moved = await call(client, "PATCH", path, 200, json={"pipeline": "nightly"})
    assert moved["pipeline"] == "nightly" and moved["target_id"] is None
    body = await error(client, "PATCH", path, 422, json={"pipeline": "missing"})
    assert body["errors"][0]["field"] == "pipeline"
    assert (await call(client, "GET", path, 200))["pipeline"] == "nightly"


# --- next fire times ------------------------------------------------------------------------


async def test_next_fire_times_of_an_interval_schedule_are_exact(client: Client) -> None:
    """Anchored at start_at (a naive time read in the schedule's zone), in that zone."""
    target = await new_target(client)
    schedule = await new_schedule(
        client,
        target_id=target["id"],
        interval_seconds=90,
        duration_seconds=None,
        timezone="Asia/Kolkata",
        start_at="2100-01-01T09:00:00",
    )
    assert datetime.fromisoformat(schedule["start_at"]) == datetime.fromisoformat(
        "2100-01-01T03:30:00+00:00"
    )
    path = f"/api/v1/schedules/{schedule['id']}/next"
    assert await call(client, "GET", f"{path}?count=3", 200) == [
        "2100-01-01T09:00:00+05:30",
        "2100-01-01T09:01:30+05:30",
        "2100-01-01T09:03:00+05:30",
    ]
    assert len(await call(client, "GET", path, 200)) == 5
    assert len(await call(client, "GET", f"{path}?count=100", 200)) == 100
    for count in ("0", "101", "x"):
        body = await error(client, "GET", f"{path}?count={count}", 422)
        assert body["errors"][0]["field"] == "count"


async def test_next_fire_times_honour_the_window_and_max_runs(client: Client) -> None:
    """end_at is the last possible slot; max_runs caps the list; paused and completed: []."""
    target = await new_target(client)
    windowed = await new_schedule(
        client,
        target_id=target["id"],
        interval_seconds=60,
        duration_seconds=None,
        start_at="2100-01-01T00:00:00Z",
        end_at="2100-01-01T00:03:00Z",
    )
    times = await call(client, "GET", f"/api/v1/schedules/{windowed['id']}/next?count=10", 200)
    assert [t[11:16] for t in times] == ["00:00", "00:01", "00:02", "00:03"]

    capped = await new_schedule(
        client, name="Capped", target_id=target["id"], duration_seconds=None, max_runs=2
    )
    path = f"/api/v1/schedules/{capped['id']}"
    assert len(await call(client, "GET", f"{path}/next?count=10", 200)) == 2
    await call(client, "POST", f"{path}/pause", 200)
    assert await call(client, "GET", f"{path}/next", 200) == []

    await store_of(client).set_schedule_status(capped["id"], ScheduleStatus.COMPLETED, "done")
    assert await call(client, "GET", f"{path}/next", 200) == []
    body = await error(client, "POST", f"{path}/pause", 409)
    assert "completed" in body["detail"]


async def test_next_fire_times_of_a_cron_schedule(client: Client) -> None:
    """*/5 * * * *: future minutes divisible by five, five minutes apart."""
    target = await new_target(client)
    schedule = await call(
        client, "POST", "/api/v1/schedules", 201, json={**SEED_CRON, "target_id": target["id"]}
    )
    before = utcnow()
    times = [
        datetime.fromisoformat(t)
        for t in await call(client, "GET", f"/api/v1/schedules/{schedule['id']}/next", 200)
    ]
    assert len(times) == 5 and times[0] >= before - timedelta(seconds=1)
    assert all(t.minute % 5 == 0 and t.second == 0 for t in times)
    assert all(b - a == timedelta(minutes=5) for a, b in itertools.pairwise(times))


# --- secrets ----------------------------------------------------------------------------


async def test_secret_headers_are_redacted_in_every_answer(client: Client) -> None:
    """Credential headers show ***, references show as written, the store keeps the values."""
    headers = {
        "Authorization": "Bearer s3cr3t-literal",
        "X-Api-Key": "${env:PARTNER_KEY}",
        "X-Trace": "${env:TRACE_ID}",
        "Accept": "application/json",
    }
    target = await new_target(client, headers=headers, url="https://api.example.com/?token=t0k3n")
    shown = {**headers, "Authorization": "***", "X-Api-Key": "***"}
    assert target["headers"] == shown and "t0k3n" not in target["url"]
    path = f"/api/v1/targets/{target['id']}"
    for answer in (
        await call(client, "GET", path, 200),
        (await call(client, "GET", "/api/v1/targets", 200))[0],
    ):
        assert answer["headers"] == shown and "t0k3n" not in answer["url"]

    # Sending back what GET showed keeps the secrets; new values replace them.
    echoed = await call(client, "GET", path, 200)
    echoed = {k: v for k, v in echoed.items() if k not in ("id", "created_at", "updated_at")}
    await call(client, "PATCH", path, 200, json={**echoed, "timeout_seconds": 7})
    stored = await store_of(client).get_target(target["id"])
    assert stored.headers == headers and stored.url.endswith("token=t0k3n")
    await call(client, "PATCH", path, 200, json={"headers": {"Authorization": "Bearer n3w"}})
    stored = await store_of(client).get_target(target["id"])
    assert stored.headers["Authorization"] == "Bearer n3w" and stored.timeout_seconds == 7


# --- lists ------------------------------------------------------------------------------


async def test_lists_are_bare_arrays_paged_by_limit_and_offset(client: Client) -> None:
    """X-Next-Offset and Link name the next page; the last page has neither."""
    for index in range(5):
        await new_target(client, name=f"target-{index}")
    async with client.get("/api/v1/targets?limit=2&offset=1") as resp:
        assert resp.status == 200
        assert [t["name"] for t in await resp.json()] == ["target-1", "target-2"]
        assert resp.headers["X-Next-Offset"] == "3"
        assert resp.headers["Link"] == '</api/v1/targets?limit=2&offset=3>; rel="next"'
    async with client.get("/api/v1/targets?limit=2&offset=3") as resp:
        assert len(await resp.json()) == 2 and "X-Next-Offset" not in resp.headers
        assert "Link" not in resp.headers
    for query, field in [("limit=0", "limit"), ("limit=501", "limit"), ("offset=-1", "offset")]:
        body = await error(client, "GET", f"/api/v1/targets?{query}", 422)
        assert body["errors"][0]["field"] == field
    body = await error(client, "GET", "/api/v1/schedules?state=paused", 422)
    assert body["errors"][0]["field"] == "state"


async def test_schedules_filter_by_status_and_target(client: Client) -> None:
    """status and target_id narrow the list; a bad status is a 422."""
    first = await new_target(client)
    second = await new_target(client, name="Second")
    a = await new_schedule(client, name="a", target_id=first["id"])
    await new_schedule(client, name="b", target_id=second["id"])
    await new_schedule(client, name="c", target_id=None, pipeline="nightly")
    await call(client, "POST", f"/api/v1/schedules/{a['id']}/pause", 200)

    async def names(query: str) -> list[str]:
        return [s["name"] for s in await call(client, "GET", f"/api/v1/schedules?{query}", 200)]

    assert await names("") == ["a", "b", "c"]
    assert await names("status=paused") == ["a"]
    assert await names("status=active") == ["b", "c"]
    assert await names(f"target_id={second['id']}") == ["b"]
    assert await names("limit=1&offset=2") == ["c"]
    await error(client, "GET", "/api/v1/schedules?status=sleeping", 422)


async def test_an_open_circuit_shows_and_resume_closes_it(client: Client) -> None:
    """The failure count and circuit_open_until the engine recorded show in GET
    /api/v1/schedules/{id}; POST .../resume resets both, in its answer and from then on."""
    target = await new_target(client)
    schedule = await new_schedule(
        client,
        target_id=target["id"],
        failure_policy="circuit_breaker",
        failure_threshold=3,
        cooldown_seconds=300,
    )
    path = f"/api/v1/schedules/{schedule['id']}"
    now = utcnow()
    open_until = now + timedelta(seconds=300)
    tripped = Progress(schedule["id"], 3, 3, now, now, circuit_open_until=open_until)
    await store_of(client).record_progress([tripped])
    shown = await call(client, "GET", path, 200)
    assert shown["status"] == "active" and shown["consecutive_failures"] == 3
    assert datetime.fromisoformat(shown["circuit_open_until"]) == open_until
    resumed = await call(client, "POST", f"{path}/resume", 200)
    for body in (resumed, await call(client, "GET", path, 200)):
        assert body["status"] == "active" and body["run_count"] == 3
        assert body["consecutive_failures"] == 0 and body["circuit_open_until"] is None


# --- runs -------------------------------------------------------------------------------


async def record_run(
    store: Store, schedule: dict[str, Any], status: RunStatus, minute: int, steps: int = 0
) -> Run:
    """A finished run of `schedule` with `steps` step result rows, as the daemon writes them."""
    slot = datetime.fromisoformat("2100-01-01T00:00:00+00:00") + timedelta(minutes=minute)
    job = f"target:{schedule['target_id']}" if schedule["target_id"] else "pipeline:nightly"
    run = Run(new_id(), job, slot, Trigger.SCHEDULE, status, schedule["id"], slot, slot)
    assert await store.insert_run(run)
    for position in range(steps):
        result = StepResult(f"step-{position}", status, slot, 12)
        await store.insert_step_result(run.id, position, result)
    return run


async def test_runs_are_listed_newest_first_with_filters(client: Client) -> None:
    """schedule_id, status, target_id and since filter; limit ≤ 500 pages."""
    store = store_of(client)
    target = await new_target(client)
    by_target = await new_schedule(client, target_id=target["id"])
    by_pipeline = await new_schedule(client, name="p", target_id=None, pipeline="nightly")
    oldest = await record_run(store, by_target, RunStatus.SUCCEEDED, 0)
    failed = await record_run(store, by_target, RunStatus.FAILED, 1)
    middle = utcnow()
    newest = await record_run(store, by_pipeline, RunStatus.FAILED, 2)

    async def ids(query: str) -> list[str]:
        return [r["id"] for r in await call(client, "GET", f"/api/v1/runs?{query}", 200)]

    assert await ids("") == [newest.id, failed.id, oldest.id]
    assert await ids(f"schedule_id={by_target['id']}") == [failed.id, oldest.id]
    assert await ids("status=failed") == [newest.id, failed.id]
    assert await ids(f"target_id={target['id']}&status=failed") == [failed.id]
    assert await ids(f"since={middle.isoformat().replace('+00:00', 'Z')}") == [newest.id]
    naive_since = middle.replace(tzinfo=None).isoformat()
    assert await ids(f"since={naive_since}") == [newest.id]
    assert await ids("limit=1&offset=1") == [failed.id]
    listed = (await call(client, "GET", "/api/v1/runs?limit=1", 200))[0]
    assert listed["status"] == "failed" and listed["job"] == "pipeline:nightly"
    assert "steps" not in listed and listed["target_id"] is None  # a pipeline's run
    by_target_runs = await call(client, "GET", f"/api/v1/runs?schedule_id={by_target['id']}", 200)
    assert [r["target_id"] for r in by_target_runs] == [target["id"]] * 2  # as seed 001's runs
    detail = await call(client, "GET", f"/api/v1/runs/{oldest.id}", 200)
    assert detail["target_id"] == target["id"]
    for query, field in [("limit=501", "limit"), ("status=done", "status"), ("since=x", "since")]:
        body = await error(client, "GET", f"/api/v1/runs?{query}", 422)
        assert body["errors"][0]["field"] == field


async def test_a_run_shows_its_steps_with_every_attempt(client: Client) -> None:
    """Step result rows are grouped by step, attempts in order; the step's status is the last."""
    store = store_of(client)
    schedule = await new_schedule(client, target_id=None, pipeline="nightly")
    run = await record_run(store, schedule, RunStatus.SUCCEEDED, 0)
    started = utcnow()
    first_try = StepResult(
        "first",
        RunStatus.FAILED,
        started,
        30,
        attempt=1,
        exit_code=1,
        error_type=ErrorType.EXIT_CODE,
        error="exit 1",
        output_tail=("boom",),
    )
    await store.insert_step_result(run.id, 0, first_try)
    await store.insert_step_result(
        run.id, 0, StepResult("first", RunStatus.SUCCEEDED, started, 20, attempt=2, exit_code=0)
    )
    await store.insert_step_result(
        run.id, 1, StepResult("second", RunStatus.SUCCEEDED, started, 5, exit_code=0)
    )
    detail = await call(client, "GET", f"/api/v1/runs/{run.id}", 200)
    assert detail["id"] == run.id and detail["schedule_id"] == schedule["id"]
    assert [(s["step"], s["status"], len(s["attempts"])) for s in detail["steps"]] == [
        ("first", "succeeded", 2),
        ("second", "succeeded", 1),
    ]
    attempt = detail["steps"][0]["attempts"][0]
    assert attempt["attempt"] == 1 and attempt["status"] == "failed"
    assert attempt["error_type"] == "exit_code" and attempt["output_tail"] == ["boom"]
    assert "step" not in attempt


# --- pipelines --------------------------------------------------------------------------


async def test_pipelines_are_listed_and_shown_without_env_values(client: Client) -> None:
    """Name, description, step count and file; a step's env shows names, never values."""
    listed = await call(client, "GET", "/api/v1/pipelines", 200)
    assert [(p["name"], p["step_count"]) for p in listed] == [("nightly", 2)]
    assert listed[0]["description"] == "two steps" and listed[0]["file"].endswith("nightly.toml")
    async with client.get("/api/v1/pipelines/nightly") as resp:
        text = await resp.text()
        detail = await resp.json()
    assert [s["name"] for s in detail["steps"]] == ["first", "second"]
    assert detail["steps"][0]["env_names"] == ["API_PASSWORD", "GREETING"]
    assert "hunter2-value" not in text and "hello-value" not in text
    body = await error(client, "GET", "/api/v1/pipelines/broken", 404)
    assert "could not be loaded" in body["detail"]


async def test_v1_needs_the_token(aiohttp_client: ClientFactory, settings: Settings) -> None:
    """Resources are behind the bearer token like daemon control."""
    raw = await aiohttp_client(create_app(settings))
    for path in ("/api/v1/targets", "/api/v1/schedules", "/api/v1/runs", "/api/v1/pipelines"):
        async with raw.get(path) as resp:
            assert resp.status == 401
