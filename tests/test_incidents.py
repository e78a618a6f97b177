"""Incidents: the tracker against a real SQLite store with a publish callable that records
the events, and end to end, a real daemon watching a local target go down and come back."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from observability import (
    Health,
    ServerFactory,
    add_target_schedule,
    api,
    controller_session,
    record_run,
    start_daemon,
    target,
)
from support import Controller, controller_settings, kill_daemon, until

from cronmgr.controller.control import DaemonControl
from cronmgr.core.models import ErrorType, Run, RunStatus, StepResult, Target, Trigger, new_id
from cronmgr.core.specs.metrics import IncidentBody
from cronmgr.observability.incidents import IncidentTracker, failed_step_class
from cronmgr.store import Store
from cronmgr.store.records import Incident, IncidentStatus

__all__ = ["target"]  # the local target fixture, used by name

T0 = datetime(2026, 3, 29, 10, 15, tzinfo=UTC)
JOB = "target:t-1"
FAILED_500 = [(0, RunStatus.FAILED, ErrorType.HTTP_5XX)]


class Events:
    """A publish callable that keeps what it was given."""

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def __call__(self, kind: str, data: Mapping[str, Any]) -> None:
        self.seen.append((kind, dict(data)))
        if self.fail:
            raise RuntimeError("the notifier is broken")

    @property
    def kinds(self) -> list[str]:
        """The kinds published, in order."""
        return [kind for kind, _ in self.seen]


async def finish(
    store: Store,
    tracker: IncidentTracker,
    status: RunStatus,
    at: datetime,
    job: str = JOB,
) -> Run:
    """Record a run of `job` ending in `status` and pass it through the tracker's hook."""
    attempts = FAILED_500 if status is RunStatus.FAILED else []
    run = await record_run(
        store, job, schedule_id="s1", status=status, started=at, seconds=0.1, attempts=attempts
    )
    tracker.run_finished(run, status, "http_5xx: 500 down" if attempts else None)
    return run


async def add_job_target(store: Store) -> None:
    """The target JOB runs: a restarted tracker only goes on with jobs that still exist."""
    await store.insert_target(Target(id="t-1", name="t-1", url="http://127.0.0.1:9/"))


async def test_threshold_failures_open_one_incident_and_a_success_resolves_it(
    store: Store,
) -> None:
    """Three failures in a row open an incident dated from the first one, with its cause;
    more failures open no other; the first success resolves it with the whole streak."""
    events = Events()
    tracker = IncidentTracker(store, events, threshold=3)
    assert await tracker.load() == 0
    failed = [
        await finish(store, tracker, RunStatus.FAILED, T0 + timedelta(seconds=i)) for i in range(2)
    ]
    await tracker.drain()
    assert events.seen == [] and await store.list_incidents() == []
    failed += [
        await finish(store, tracker, RunStatus.FAILED, T0 + timedelta(seconds=i))
        for i in range(2, 5)
    ]
    await tracker.drain()
    assert events.kinds == ["incident_opened"]
    opened = events.seen[0][1]
    assert set(opened) == set(IncidentBody.model_fields)
    assert opened["status"] == "open" and opened["target_id"] == "t-1"
    assert opened["error_class"] == "http_5xx" and opened["cause"] == "http_5xx: 500 down"
    assert opened["started_at"] == T0.isoformat() and opened["failed_runs"] == 3
    assert opened["first_failed_run_id"] == failed[0].id
    assert opened["last_failed_run_id"] == failed[2].id

    recovery = await finish(store, tracker, RunStatus.SUCCEEDED, T0 + timedelta(minutes=5))
    await tracker.drain()
    assert events.kinds == ["incident_opened", "incident_resolved"]
    resolved = events.seen[1][1]
    assert resolved["id"] == opened["id"] and resolved["status"] == "resolved"
    assert resolved["failed_runs"] == 5 and resolved["resolved_by_run_id"] == recovery.id
    ended = datetime.fromisoformat(resolved["resolved_at"])
    assert resolved["duration_seconds"] == pytest.approx((ended - T0).total_seconds(), abs=1e-3)
    (stored,) = await store.list_incidents()
    assert stored.status is IncidentStatus.RESOLVED and stored.id == opened["id"]


async def test_cancelled_runs_neither_count_nor_end_a_streak(store: Store) -> None:
    """failed, cancelled, failed reaches a threshold of 2; a success before it resets."""
    events = Events()
    tracker = IncidentTracker(store, events, threshold=2)
    await finish(store, tracker, RunStatus.FAILED, T0)
    await finish(store, tracker, RunStatus.SUCCEEDED, T0 + timedelta(seconds=1))
    await finish(store, tracker, RunStatus.FAILED, T0 + timedelta(seconds=2))
    await finish(store, tracker, RunStatus.CANCELLED, T0 + timedelta(seconds=3))
    await tracker.drain()
    assert events.seen == []
    await finish(store, tracker, RunStatus.FAILED, T0 + timedelta(seconds=4))
    await tracker.drain()
    assert events.kinds == ["incident_opened"]
    assert events.seen[0][1]["started_at"] == (T0 + timedelta(seconds=2)).isoformat()


async def test_a_restarted_tracker_carries_on_with_the_open_incident(store: Store) -> None:
    """A new tracker (a daemon restart) loads the open incident: further failures open no
    second one, and the next success resolves the first, counting all its failures."""
    first = IncidentTracker(store, Events(), threshold=2)
    for i in range(2):
        await finish(store, first, RunStatus.FAILED, T0 + timedelta(seconds=i))
    await first.drain()
    (opened,) = await store.list_incidents(status=IncidentStatus.OPEN)

    events = Events()
    second = IncidentTracker(store, events, threshold=2)
    assert await second.load() == 1
    for i in range(3):
        await finish(store, second, RunStatus.FAILED, T0 + timedelta(minutes=1, seconds=i))
    await finish(store, second, RunStatus.SUCCEEDED, T0 + timedelta(minutes=2))
    await second.drain()
    assert events.kinds == ["incident_resolved"]
    (only,) = await store.list_incidents()
    assert only.id == opened.id and only.failed_runs == 5 and only.resolved_at is not None


async def test_a_restart_goes_on_counting_a_streak_that_had_opened_nothing(
    store: Store,
) -> None:
    """Two failures, a restart, one more: with a threshold of 3 that is an incident, dated
    from the first failure before the restart."""
    await add_job_target(store)
    first = IncidentTracker(store, Events(), threshold=3)
    await first.load()
    before = [
        await finish(store, first, RunStatus.FAILED, T0 + timedelta(seconds=i)) for i in (0, 1)
    ]
    await first.drain()
    assert await store.list_incidents() == []

    events = Events()
    second = IncidentTracker(store, events, threshold=3)
    assert await second.load() == 0
    await second.drain()
    assert events.seen == []
    last = await finish(store, second, RunStatus.FAILED, T0 + timedelta(minutes=1))
    await second.drain()
    assert events.kinds == ["incident_opened"]
    opened = events.seen[0][1]
    assert opened["failed_runs"] == 3 and opened["started_at"] == T0.isoformat()
    assert opened["first_failed_run_id"] == before[0].id
    assert opened["last_failed_run_id"] == last.id


async def test_runs_a_dead_daemon_left_running_count_towards_an_incident(
    store: Store,
) -> None:
    """The next start fails the orphans; if they reach the threshold, loading opens the
    incident, its cause the orphans' reason."""
    await add_job_target(store)
    orphans = [
        Run(
            id=new_id(),
            job=JOB,
            scheduled_for=T0 + timedelta(seconds=i),
            trigger=Trigger.SCHEDULE,
            status=RunStatus.RUNNING,
            schedule_id="s1",
            started_at=T0 + timedelta(seconds=i),
        )
        for i in (0, 1)
    ]
    for orphan in orphans:
        assert await store.insert_run(orphan)
    assert await store.fail_orphaned_runs("the daemon died") == 2

    events = Events()
    tracker = IncidentTracker(store, events, threshold=2)
    assert await tracker.load() == 0
    await tracker.drain()
    assert events.kinds == ["incident_opened"]
    opened = events.seen[0][1]
    assert opened["failed_runs"] == 2 and opened["started_at"] == T0.isoformat()
    assert opened["first_failed_run_id"] == orphans[0].id
    assert opened["last_failed_run_id"] == orphans[1].id
    assert opened["cause"] == "the daemon died"
    (stored,) = await store.list_incidents(status=IncidentStatus.OPEN)
    assert stored.id == opened["id"]


async def test_deleting_a_target_ends_its_incident_and_its_streak(store: Store) -> None:
    """The open incident of a deleted target is resolved (by no run), and a restart opens
    no new one for the failures it had."""
    await add_job_target(store)
    tracker = IncidentTracker(store, Events(), threshold=2)
    for i in range(2):
        await finish(store, tracker, RunStatus.FAILED, T0 + timedelta(seconds=i))
    await tracker.drain()
    (opened,) = await store.list_incidents(status=IncidentStatus.OPEN)
    assert await store.delete_target("t-1") == []
    (ended,) = await store.list_incidents()
    assert ended.id == opened.id and ended.status is IncidentStatus.RESOLVED
    assert ended.resolved_at is not None and ended.resolved_by_run_id is None

    events = Events()
    restarted = IncidentTracker(store, events, threshold=2)
    assert await restarted.load() == 0
    await restarted.drain()
    assert events.seen == [] and len(await store.list_incidents()) == 1


async def test_two_trackers_on_one_store_share_one_incident(store: Store) -> None:
    """The store keeps one open incident per job: a second daemon reaching the threshold
    takes the open one over, and it is resolved (and announced) once."""
    events_a, events_b = Events(), Events()
    a = IncidentTracker(store, events_a, threshold=1)
    b = IncidentTracker(store, events_b, threshold=1)
    await finish(store, a, RunStatus.FAILED, T0)
    await a.drain()
    await finish(store, b, RunStatus.FAILED, T0 + timedelta(seconds=1))
    await b.drain()
    assert events_a.kinds == ["incident_opened"] and events_b.kinds == []
    await finish(store, b, RunStatus.SUCCEEDED, T0 + timedelta(seconds=2))
    await b.drain()
    a.run_finished(
        await record_run(store, JOB, schedule_id="s2", status=RunStatus.SUCCEEDED, started=T0),
        RunStatus.SUCCEEDED,
        None,
    )
    await a.drain()
    assert events_b.kinds == ["incident_resolved"] and events_a.kinds == ["incident_opened"]
    (only,) = await store.list_incidents()
    assert only.status is IncidentStatus.RESOLVED


async def test_a_failing_publish_does_not_stop_the_bookkeeping(store: Store) -> None:
    """The notifier raising is logged; the incident is still stored and resolved."""
    events = Events(fail=True)
    tracker = IncidentTracker(store, events, threshold=1)
    await finish(store, tracker, RunStatus.FAILED, T0)
    await finish(store, tracker, RunStatus.SUCCEEDED, T0 + timedelta(seconds=1))
    await tracker.drain()
    assert events.kinds == ["incident_opened", "incident_resolved"]
    (stored,) = await store.list_incidents()
    assert stored.status is IncidentStatus.RESOLVED


async def test_incidents_are_listed_by_status_job_and_time(store: Store) -> None:
    """Newest first; `since` keeps the incidents open at some moment at or after it."""
    old = Incident(id=new_id(), job=JOB, started_at=T0, opened_at=T0, failed_runs=3)
    current = Incident(
        id=new_id(),
        job=JOB,
        started_at=T0 + timedelta(hours=5),
        opened_at=T0 + timedelta(hours=5),
        failed_runs=3,
    )
    other = Incident(
        id=new_id(),
        job="pipeline:etl",
        started_at=T0 + timedelta(hours=2),
        opened_at=T0 + timedelta(hours=2),
        failed_runs=4,
    )
    assert await store.open_incident(old)
    assert not await store.open_incident(current), "one open incident per job"
    assert await store.resolve_incident(old.id, T0 + timedelta(hours=1), "r9", 4) is not None
    assert await store.resolve_incident(old.id, T0 + timedelta(hours=2), "r10", 9) is None
    assert await store.open_incident(current) and await store.open_incident(other)

    def ids(found: list[Incident]) -> list[str]:
        return [i.id for i in found]

    assert ids(await store.list_incidents()) == [current.id, other.id, old.id]
    assert ids(await store.list_incidents(status=IncidentStatus.OPEN)) == [current.id, other.id]
    assert ids(await store.list_incidents(status=IncidentStatus.RESOLVED)) == [old.id]
    assert ids(await store.list_incidents(job=JOB)) == [current.id, old.id]
    later = T0 + timedelta(hours=1, minutes=30)
    assert ids(await store.list_incidents(since=later)) == [current.id, other.id]
    assert ids(await store.list_incidents(limit=1, offset=1)) == [other.id]
    (resolved,) = await store.list_incidents(status=IncidentStatus.RESOLVED)
    assert resolved.failed_runs == 4 and resolved.resolved_by_run_id == "r9"


def test_the_error_class_is_the_first_step_whose_last_attempt_failed() -> None:
    """A step retried into success does not count; a later failed step does."""

    def step(position: int, attempt: int, status: RunStatus, kind: ErrorType | None) -> StepResult:
        return StepResult(
            f"s{position}", status, T0, 1, attempt=attempt, position=position, error_type=kind
        )

    steps = [
        step(0, 1, RunStatus.FAILED, ErrorType.TIMEOUT),
        step(0, 2, RunStatus.SUCCEEDED, None),
        step(1, 1, RunStatus.FAILED, ErrorType.EXIT_CODE),
    ]
    assert failed_step_class(steps) == "exit_code"
    assert failed_step_class(steps[:2]) is None


# --- end to end -----------------------------------------------------------------------------


HOOK_SECRET = "incident-hook-secret"


def signed(header: str, body: bytes) -> bool:
    """Whether `header` is `t=<unix>,v1=<HMAC-SHA256 of "<t>.<body>">` under HOOK_SECRET,
    checked here independently of cronmgr's own signing code."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not {"t", "v1"} <= fields.keys():
        return False
    mac = hmac.new(HOOK_SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(fields["t"])) < 300
    return fresh and hmac.compare_digest(mac.hexdigest(), fields["v1"])


@dataclass
class WebhookController(Controller):
    """A controller whose config has one webhook (the way a config file's [[webhooks]]
    reaches a process: CRONMGR_WEBHOOKS as JSON)."""

    webhook_url: str = ""

    def env(self) -> dict[str, str]:
        """The controller's environment, with the webhook."""
        hook = {"url": self.webhook_url, "secret": HOOK_SECRET}
        return {**super().env(), "CRONMGR_WEBHOOKS": json.dumps([hook])}


@pytest.fixture
async def webhook(aiohttp_server: ServerFactory) -> AsyncIterator[tuple[str, list[Any]]]:
    """A local webhook receiver: its URL and the JSON bodies it was sent (only those whose
    signature is valid; a bad one fails the request, so the sender would retry)."""
    received: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not signed(request.headers.get("X-Cronmgr-Signature", ""), body):
            return web.Response(status=401)
        received.append(json.loads(body))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    yield str(server.make_url("/hook")), received


@pytest.fixture
def notifying_controller(
    tmp_path: Path, webhook: tuple[str, list[Any]]
) -> Iterator[WebhookController]:
    """A controller with incident_threshold 2 and the local webhook; torn down after."""
    settings = controller_settings(tmp_path, incident_threshold=2)
    controller = WebhookController(settings, webhook_url=webhook[0])
    try:
        controller.start()
        yield controller
    finally:
        controller.shutdown()
        kill_daemon(settings)


async def incidents_of(http: Any, target_id: str, **params: str) -> list[dict[str, Any]]:
    """The target's incidents through the API."""
    found: list[dict[str, Any]] = await api(
        http, "GET", "/api/v1/incidents", params={"target_id": target_id, **params}
    )
    return found


async def failed_runs(http: Any, schedule_id: str) -> int:
    """How many runs of the schedule failed so far."""
    runs = await api(
        http,
        "GET",
        "/api/v1/runs",
        params={"schedule_id": schedule_id, "status": "failed", "limit": 500},
    )
    return len(runs)


async def test_a_target_that_goes_down_and_comes_back_opens_and_resolves_one_incident(
    notifying_controller: WebhookController,
    target: tuple[TestServer, Health],
    webhook: tuple[str, list[Any]],
) -> None:
    """A real daemon fires a local target that answers 500, then 200: one incident opens
    after `incident_threshold` failures (shown in the metrics), the first success resolves
    it, both are sent to the webhook, and the API lists it by every filter."""
    server, health = target
    async with controller_session(notifying_controller) as http:
        await start_daemon(http)
        # Failure policy none: the engine's auto-disable must not end the outage first.
        flaky, schedule = await add_target_schedule(http, server, "/flaky", failure_policy="none")

        async def open_one() -> list[dict[str, Any]]:
            return await incidents_of(http, flaky["id"], status="open")

        (opened,) = await until(open_one, what="an incident to open")
        assert opened["error_class"] == "http_5xx" and "500" in (opened["cause"] or "")
        assert opened["failed_runs"] >= 2 and opened["kind"] == "target"
        report = await api(http, "GET", "/api/v1/metrics")
        (entry,) = [t for t in report["targets"] if t["target_id"] == flaky["id"]]
        assert entry["open_incident"]["id"] == opened["id"]
        assert report["totals"]["open_incidents"] == 1

        health.down = False

        async def resolved() -> list[dict[str, Any]]:
            return await incidents_of(http, flaky["id"], status="resolved")

        (closed,) = await until(resolved, what="the incident to resolve")
        # Two more healthy runs after the one that resolved it: nothing new opens.
        await until(lambda: health.hits["/flaky"] >= closed["failed_runs"] + 3)
        everything = await incidents_of(http, flaky["id"])
        assert [i["id"] for i in everything] == [opened["id"]], "exactly one incident"
        assert closed["id"] == opened["id"] and closed["resolved_by_run_id"]
        assert closed["duration_seconds"] > 0 and closed["failed_runs"] >= opened["failed_runs"]
        assert await failed_runs(http, schedule["id"]) == closed["failed_runs"]
        assert await incidents_of(http, flaky["id"], status="open") == []
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert await incidents_of(http, flaky["id"], since=future) == []
        assert await incidents_of(http, flaky["id"], pipeline="quick") == []
        await api(http, "GET", "/api/v1/incidents", 422, params={"status": "sleeping"})
        report = await api(http, "GET", "/api/v1/metrics")
        (entry,) = [t for t in report["targets"] if t["target_id"] == flaky["id"]]
        assert entry["open_incident"] is None and entry["incidents_7d"] == 1
        assert 0 < entry["availability_24h"] < 1

    _url, received = webhook

    def incident_events() -> list[Any]:
        found = [body for body in received if body["event"].startswith("incident_")]
        return found if len(found) >= 2 else []

    sent = await until(incident_events, what="both incident events at the webhook")
    assert [body["event"] for body in sent] == ["incident_opened", "incident_resolved"]
    assert {body["data"]["id"] for body in sent} == {opened["id"]}
    assert sent[1]["data"]["status"] == "resolved" and sent[1]["data"]["duration_seconds"] > 0


async def test_a_daemon_restart_during_an_incident_opens_no_second_one(
    controller_factory: Callable[..., Controller], target: tuple[TestServer, Health]
) -> None:
    """Stop and start the daemon while the target is down: the new daemon keeps failing it
    past the threshold again, yet there is still one incident, resolved on recovery."""
    controller = controller_factory(incident_threshold=2)
    server, health = target
    async with controller_session(controller) as http:
        await start_daemon(http)
        flaky, schedule = await add_target_schedule(http, server, "/flaky", failure_policy="none")
        (opened,) = await until(
            lambda: incidents_of(http, flaky["id"], status="open"), what="an incident to open"
        )
        await api(http, "POST", "/api/cron/stop")
        before = await failed_runs(http, schedule["id"])
        await start_daemon(http)

        async def failed_again() -> bool:
            return await failed_runs(http, schedule["id"]) >= before + 3

        await until(failed_again, what="three more failures after the restart")
        assert [i["id"] for i in await incidents_of(http, flaky["id"])] == [opened["id"]]
        health.down = False
        (closed,) = await until(
            lambda: incidents_of(http, flaky["id"], status="resolved"), what="the resolution"
        )
        assert closed["id"] == opened["id"] and closed["failed_runs"] >= before + 3
        assert len(await incidents_of(http, flaky["id"])) == 1


async def test_a_forgotten_job_has_its_streak_ended_and_its_incident_resolved(
    store: Store,
) -> None:
    events = Events()
    tracker = IncidentTracker(store, events, threshold=2)
    gone, failing = "pipeline:gone", "pipeline:failing"
    for i in range(2):
        await finish(store, tracker, RunStatus.FAILED, T0 + timedelta(seconds=i), job=gone)
    await finish(store, tracker, RunStatus.FAILED, T0, job=failing)
    await tracker.drain()
    assert tracker.jobs() == {gone, failing}
    tracker.forget([gone], "its pipeline file was removed")
    await tracker.drain()
    assert tracker.jobs() == {failing}
    (resolved,) = await store.list_incidents(job=gone)
    assert resolved.status is IncidentStatus.RESOLVED and resolved.resolved_by_run_id is None
    assert events.kinds == ["incident_opened", "incident_resolved"]
    assert events.seen[-1][1]["failed_runs"] == 2


async def test_removing_a_pipelines_file_resolves_its_open_incident(
    controller_factory: Callable[..., Controller],
) -> None:
    """The pipeline fails past the threshold; its file goes and the daemon reloads: the
    incident is resolved (by no run) instead of staying open for a job that is gone."""
    controller = controller_factory(incident_threshold=2)
    doomed = controller.settings.pipelines_path / "doomed.toml"
    doomed.write_text(
        '[schedule]\ntype = "interval"\ninterval_seconds = 1\nfailure_policy = "none"\n'
        '[[steps]]\nname = "fail"\ncommand = ["false"]\n'
    )

    async def incidents(**params: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await api(
            http, "GET", "/api/v1/incidents", params={"pipeline": "doomed", **params}
        )
        return found

    async with controller_session(controller) as http:
        await start_daemon(http)
        (opened,) = await until(lambda: incidents(status="open"), what="an incident to open")
        doomed.unlink()
        assert DaemonControl(controller.settings).reload()
        (closed,) = await until(lambda: incidents(status="resolved"), what="the resolution")
        assert closed["id"] == opened["id"] and closed["resolved_by_run_id"] is None
        assert await incidents(status="open") == []


async def test_a_deleted_targets_incident_is_announced_resolved_once(store: Store) -> None:
    """The store resolves it with the target; the daemon's tracker, told the target is
    gone, still publishes the resolution (alerts elsewhere close), and only once."""
    await add_job_target(store)
    events = Events()
    tracker = IncidentTracker(store, events, threshold=2)
    for i in range(2):
        await finish(store, tracker, RunStatus.FAILED, T0 + timedelta(seconds=i))
    await tracker.drain()
    await store.delete_target("t-1")
    tracker.forget([JOB], "its target was deleted")
    tracker.forget([JOB], "its target was deleted")
    await tracker.drain()
    assert events.kinds == ["incident_opened", "incident_resolved"]
    resolved = events.seen[-1][1]
    assert resolved["status"] == "resolved" and resolved["resolved_by_run_id"] is None
