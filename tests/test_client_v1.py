"""The /api/v1 methods of both clients against a real controller process.

Every test body runs twice, once with `Client` and once with `AsyncClient`, through `Api`,
which awaits what the async client returns and takes what the blocking one returns as it
is: the two clients must behave alike. Runs are written straight through the controller's
store, as the daemon would write them; no daemon is started.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support import Controller

from cronmgr import AsyncClient, Client
from cronmgr.controller.firing import DAEMON_NOT_RUNNING_WARNING
from cronmgr.core.errors import Conflict, InvalidInput, NotFound
from cronmgr.core.models import (
    Node,
    Run,
    RunStatus,
    ScheduleStatus,
    StepResult,
    Trigger,
    new_id,
    utcnow,
)
from cronmgr.store import open_store

TARGET = {"method": "post", "headers": {"Authorization": "Bearer s3cr3t"}, "timeout_seconds": 9}
SLOT_0 = datetime(2100, 1, 1, tzinfo=UTC)


class Api:
    """One client, blocking or async, behind awaitable methods of the same names."""

    def __init__(self, client: Client | AsyncClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)
        is_async = isinstance(self.client, AsyncClient)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            assert inspect.isawaitable(result) is is_async  # awaited only for AsyncClient
            return await result if is_async else result

        return call

    async def every(self, name: str, **kwargs: Any) -> list[dict[str, Any]]:
        """All an `iter_*` method yields: a generator, or an async one for `AsyncClient`."""
        items = getattr(self.client, name)(**kwargs)
        if isinstance(self.client, AsyncClient):
            assert isinstance(items, AsyncGenerator)
            return [item async for item in items]
        assert isinstance(items, Generator)
        return list(items)


@pytest.fixture(params=["Client", "AsyncClient"])
async def api(request: pytest.FixtureRequest, controller: Controller) -> AsyncIterator[Api]:
    """The controller's API through `Client`, then through `AsyncClient`."""
    if request.param == "Client":
        with Client(controller.url, token=controller.token) as client:
            yield Api(client)
    else:
        async with AsyncClient(controller.url, token=controller.token) as client:
            yield Api(client)


async def record_runs(
    controller: Controller, schedule: dict[str, Any], *statuses: RunStatus
) -> list[Run]:
    """Finished runs of `schedule`, one minute apart, each with one step result."""
    runs: list[Run] = []
    async with open_store(controller.settings.store_url) as store:
        for status in statuses:
            slot = SLOT_0 + timedelta(minutes=len(runs))
            job = f"target:{schedule['target_id']}" if schedule["target_id"] else "pipeline:quick"
            run = Run(new_id(), job, slot, Trigger.SCHEDULE, status, schedule["id"], slot, slot)
            assert await store.insert_run(run)
            await store.insert_step_result(run.id, 0, StepResult("only", status, slot, 7))
            runs.append(run)
    return runs


def ids(items: list[dict[str, Any]]) -> list[str]:
    """The `id` of each item, in order."""
    return [item["id"] for item in items]


# --- targets ------------------------------------------------------------------------------


async def test_target_create_get_list_update_delete(api: Api) -> None:
    """Keyword fields are the API's; update is a merge patch; a deleted target is NotFound."""
    target = await api.create_target("Example", "https://example.com/hook", **TARGET)
    assert target["method"] == "POST" and target["timeout_seconds"] == 9
    assert target["headers"] == {"Authorization": "***"}
    assert await api.get_target(target["id"]) == target
    assert ids(await api.list_targets()) == [target["id"]]

    changed = await api.update_target(target["id"], timeout_seconds=5, name="Renamed")
    assert changed["name"] == "Renamed" and changed["timeout_seconds"] == 5
    assert changed["method"] == "POST" and changed["headers"] == {"Authorization": "***"}
    reset = await api.update_target(target["id"], timeout_seconds=None)
    assert reset["timeout_seconds"] != 5 and reset["name"] == "Renamed"

    gone = await api.delete_target(target["id"])
    assert gone["success"] is True and gone["deleted_schedules"] == []
    with pytest.raises(NotFound) as caught:
        await api.get_target(target["id"])
    assert caught.value.status == 404 and target["id"] in caught.value.detail


async def test_status_codes_come_back_as_typed_exceptions(api: Api, controller: Controller) -> None:
    """422 → InvalidInput with field errors, 404 → NotFound, 409 → Conflict."""
    with pytest.raises(InvalidInput) as invalid:
        await api.create_target("Bad", "file:///etc/passwd")
    assert invalid.value.status == 422 and [e["field"] for e in invalid.value.errors] == ["url"]
    with pytest.raises(InvalidInput) as invalid:
        await api.create_schedule("No timing", "interval", pipeline="quick")
    assert [e["field"] for e in invalid.value.errors] == ["interval_seconds"]
    with pytest.raises(InvalidInput) as invalid:
        await api.list_runs(status="done")
    assert [e["field"] for e in invalid.value.errors] == ["status"]

    for method in ("get_schedule", "get_run", "get_pipeline", "next_runs", "resume_schedule"):
        with pytest.raises(NotFound, match="nope"):
            await getattr(api, method)("nope")
    with pytest.raises(NotFound, match="target 'a/b' does not exist"):  # not another route
        await api.get_target("a/b")

    target = await api.create_target("Used", "https://example.com/")
    with pytest.raises(Conflict) as conflict:
        await api.create_target("Used", "https://example.com/other")
    assert conflict.value.status == 409
    schedule = await api.create_schedule(
        "Hourly", "cron", cron_expression="0 * * * *", target_id=target["id"]
    )
    with pytest.raises(Conflict, match="cascade=true"):
        await api.delete_target(target["id"])
    async with open_store(controller.settings.store_url) as store:
        await store.set_schedule_status(schedule["id"], ScheduleStatus.COMPLETED, "done")
    with pytest.raises(Conflict, match="completed"):
        await api.pause_schedule(schedule["id"])

    gone = await api.delete_target(target["id"], cascade=True)
    assert gone["deleted_schedules"] == [schedule["id"]]


@pytest.mark.parametrize("kind", ["Client", "AsyncClient"])
async def test_delete_target_follows_the_cascade_deletes_setting(
    controller_factory: Callable[..., Controller], kind: str
) -> None:
    """Without `cascade`, the controller's `cascade_deletes = true` deletes the schedules
    along; `cascade=False` asks for the 409 all the same."""
    controller = controller_factory(cascade_deletes=True)
    client = (Client if kind == "Client" else AsyncClient)(controller.url, token=controller.token)
    api = Api(client)
    target = await api.create_target("Used", "https://example.com/")
    schedule = await api.create_schedule(
        "Hourly", "cron", cron_expression="0 * * * *", target_id=target["id"]
    )
    with pytest.raises(Conflict, match="cascade=true"):
        await api.delete_target(target["id"], cascade=False)
    gone = await api.delete_target(target["id"])
    assert gone["deleted_schedules"] == [schedule["id"]]
    with pytest.raises(NotFound):
        await api.get_schedule(schedule["id"])
    await api.close()


# --- schedules ----------------------------------------------------------------------------


async def test_creating_and_resuming_a_schedule_give_its_warnings(api: Api) -> None:
    """No daemon runs: the answer's `warnings` says the schedule fires once it starts."""
    target = await api.create_target("Warned", "https://example.com/")
    created = await api.create_schedule(
        "warned", "interval", target_id=target["id"], interval_seconds=60
    )
    assert created["warnings"] == [DAEMON_NOT_RUNNING_WARNING]
    await api.pause_schedule(created["id"])
    resumed = await api.resume_schedule(created["id"])
    assert resumed["warnings"] == [DAEMON_NOT_RUNNING_WARNING]
    assert "warnings" not in await api.get_schedule(created["id"])


async def test_schedule_lifecycle_with_datetimes_next_pause_resume(api: Api) -> None:
    """A naive datetime is sent as isoformat and read in the schedule's zone; next follows it."""
    target = await api.create_target("T", "https://example.com/")
    schedule = await api.create_schedule(
        "Every 90 s",
        "interval",
        interval_seconds=90,
        target_id=target["id"],
        timezone="Asia/Kolkata",
        start_at=datetime(2100, 1, 1, 9, 0),
        end_at="2100-01-02T00:00:00Z",
    )
    sid = schedule["id"]
    assert datetime.fromisoformat(schedule["start_at"]) == datetime(2100, 1, 1, 3, 30, tzinfo=UTC)
    assert await api.next_runs(sid, count=3) == [
        "2100-01-01T09:00:00+05:30",
        "2100-01-01T09:01:30+05:30",
        "2100-01-01T09:03:00+05:30",
    ]
    assert len(await api.next_runs(sid)) == 5

    assert (await api.pause_schedule(sid))["status"] == "paused"
    assert await api.next_runs(sid) == []
    assert ids(await api.list_schedules(status="paused")) == [sid]
    assert (await api.resume_schedule(sid))["status"] == "active"
    assert (await api.get_schedule(sid))["status"] == "active"

    moved = await api.update_schedule(sid, pipeline="quick", interval_seconds=60)
    assert moved["pipeline"] == "quick" and moved["target_id"] is None
    assert moved["interval_seconds"] == 60 and moved["start_at"] == schedule["start_at"]
    back = await api.update_schedule(sid, target_id=target["id"])
    assert back["target_id"] == target["id"] and back["pipeline"] is None

    other = await api.create_schedule("Other", "once", run_at=SLOT_0, pipeline="quick")
    assert datetime.fromisoformat(other["run_at"]) == SLOT_0
    assert ids(await api.list_schedules()) == [sid, other["id"]]  # by name
    assert ids(await api.list_schedules(target_id=target["id"])) == [sid]
    assert ids(await api.list_schedules(limit=1, offset=1)) == [other["id"]]
    assert (await api.delete_schedule(sid))["id"] == sid
    with pytest.raises(NotFound):
        await api.get_schedule(sid)


# --- runs ---------------------------------------------------------------------------------


async def test_runs_are_listed_with_filters_and_shown_with_steps(
    api: Api, controller: Controller
) -> None:
    """schedule_id, status, target_id and since (a datetime or a string) narrow the list."""
    target = await api.create_target("T", "https://example.com/")
    by_target = await api.create_schedule(
        "A", "interval", interval_seconds=60, target_id=target["id"]
    )
    by_pipeline = await api.create_schedule("B", "interval", interval_seconds=60, pipeline="quick")
    ok, failed = await record_runs(controller, by_target, RunStatus.SUCCEEDED, RunStatus.FAILED)
    middle = utcnow()
    (newest,) = await record_runs(controller, by_pipeline, RunStatus.FAILED)

    assert ids(await api.list_runs()) == [newest.id, failed.id, ok.id]
    assert ids(await api.list_runs(schedule_id=by_target["id"])) == [failed.id, ok.id]
    assert ids(await api.list_runs(status="failed")) == [newest.id, failed.id]
    assert ids(await api.list_runs(target_id=target["id"], status=RunStatus.FAILED)) == [failed.id]
    assert ids(await api.list_runs(since=middle)) == [newest.id]
    assert ids(await api.list_runs(since=middle.replace(tzinfo=None))) == [newest.id]
    assert ids(await api.list_runs(since=middle.isoformat())) == [newest.id]
    assert ids(await api.list_runs(limit=1, offset=1)) == [failed.id]

    detail = await api.get_run(failed.id)
    assert detail["status"] == "failed" and detail["schedule_id"] == by_target["id"]
    assert [(s["step"], len(s["attempts"])) for s in detail["steps"]] == [("only", 1)]


async def test_iter_methods_follow_every_page(api: Api, controller: Controller) -> None:
    """page_size 2 over 7 runs: four requests, every run once, newest first; filters kept."""
    schedule = await api.create_schedule("S", "interval", interval_seconds=60, pipeline="quick")
    statuses = [RunStatus.FAILED if i % 3 == 0 else RunStatus.SUCCEEDED for i in range(7)]
    runs = await record_runs(controller, schedule, *statuses)
    newest_first = [run.id for run in reversed(runs)]

    assert len(await api.list_runs(limit=2)) == 2
    assert ids(await api.every("iter_runs", page_size=2)) == newest_first
    assert ids(await api.every("iter_runs", page_size=7)) == newest_first
    failed = [run.id for run in reversed(runs) if run.status is RunStatus.FAILED]
    assert ids(await api.every("iter_runs", status="failed", page_size=2)) == failed
    assert await api.every("iter_runs", schedule_id="nope", page_size=2) == []

    for index in range(3):
        await api.create_target(f"t{index}", "https://example.com/")
    names = [t["name"] for t in await api.every("iter_targets", page_size=2)]
    assert names == ["t0", "t1", "t2"]
    assert ids(await api.every("iter_schedules", page_size=1)) == [schedule["id"]]


# --- pipelines and the document -----------------------------------------------------------


async def test_pipelines_and_the_openapi_document(api: Api) -> None:
    """Pipelines are listed and shown by name; openapi() is the document the API serves."""
    listed = await api.list_pipelines()
    assert [p["name"] for p in listed] == ["default", "quick", "slow"]
    quick = await api.get_pipeline("quick")
    assert quick["name"] == "quick" and len(quick["steps"]) == listed[1]["step_count"]
    with pytest.raises(Conflict, match="the daemon is not running"):
        await api.run_pipeline("quick")
    with pytest.raises(NotFound, match="unknown pipeline 'nope'"):
        await api.run_pipeline("nope")
    document = await api.openapi()
    assert document["openapi"].startswith("3.1")
    assert {"/api/v1/runs", "/api/v1/schedules/{id}/next"} <= document["paths"].keys()


# --- nodes --------------------------------------------------------------------------------


async def test_nodes_lists_the_daemons_of_the_store(api: Api, controller: Controller) -> None:
    """None before a daemon joins; then each node by id with what the controller reads in
    its row: the lease's seconds left, the pipelines that differ, whether it is this host."""
    assert await api.nodes() == []
    now = utcnow()
    lease = now + timedelta(seconds=30)
    written = [
        ("b", "elsewhere", "1" * 16),  # alone with its hash: it differs
        ("a", socket.gethostname(), "2" * 16),
        ("c", "elsewhere", "2" * 16),
    ]
    async with open_store(controller.settings.store_url) as store:
        for node_id, host, digest in written:  # as a daemon joins
            node = Node(node_id, host, 7, "1.0", now, now, lease, pipelines={"quick": digest})
            await store.join_node(node)
    listed = await api.nodes()
    assert ids(listed) == ["a", "b", "c"]
    assert [n["pipelines_differing"] for n in listed] == [[], ["quick"], []]
    assert [n["this_host"] for n in listed] == [True, False, False]
    assert all(0 < n["lease_expires_in_seconds"] <= 30 for n in listed)
    assert listed[0]["state"] == "live" and listed[0]["pipelines"] == {"quick": "2" * 16}


# --- observability -------------------------------------------------------------------------


async def test_metrics_prometheus_incidents_and_notifications(
    api: Api, controller: Controller
) -> None:
    """A failed run shows in the metrics and the Prometheus text; incidents list (none
    yet, a bad filter is InvalidInput); a test notification without webhooks is a
    Conflict."""
    target = await api.create_target("Observed", "https://example.com/")
    schedule = await api.create_schedule(
        "Hourly", "cron", cron_expression="0 * * * *", target_id=target["id"]
    )
    async with open_store(controller.settings.store_url) as store:
        job = f"target:{target['id']}"
        run = Run(new_id(), job, SLOT_0, Trigger.SCHEDULE, RunStatus.RUNNING, schedule["id"])
        assert await store.insert_run(run)
        await store.update_run(run.id, RunStatus.FAILED, finished_at=utcnow(), error="boom")

    report = await api.metrics(window_hours=168)
    (entry,) = [s for s in report["schedules"] if s["schedule_id"] == schedule["id"]]
    assert entry["runs"]["failed"] == 1 and entry["success_rate"] == 0
    text = await api.prometheus_metrics()
    assert "cronmgr_runs_total" in text and schedule["id"] in text
    assert await api.list_incidents(status="open", target_id=target["id"]) == []
    with pytest.raises(InvalidInput):
        await api.list_incidents(status="sleeping")
    with pytest.raises(Conflict):
        await api.test_notifications()
