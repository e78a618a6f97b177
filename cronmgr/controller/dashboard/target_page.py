"""A target's page: its definition (redacted), a response-time chart of its recent runs,
its availability over 24 hours and 7 days, its schedules, and "send now", which has the
daemon send the request once and shows the status, the time and the response body.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web

from cronmgr.controller.api.targets import request_target_run
from cronmgr.controller.dashboard.charts import CHART_RUNS, response_chart
from cronmgr.controller.dashboard.common import P, render, with_flash
from cronmgr.controller.dashboard.names import Names, run_rows
from cronmgr.controller.keys import CONTROL, STORE
from cronmgr.core.errors import CronmgrError, NotFound
from cronmgr.core.models import TARGET_JOB_PREFIX, Run, RunStatus, Target, utcnow
from cronmgr.core.secret_refs import redact
from cronmgr.store import Store

WINDOWS = (("24 h", timedelta(hours=24)), ("7 d", timedelta(days=7)))
"""The spans the availability is given over."""

SEND_WAIT_MARGIN_SECONDS = 10.0
"""How much longer than the request may take a "send now" waits for the daemon's answer."""

SEND_WAIT_MAX_SECONDS = 60.0
EXCERPT_CHARS = 2000
"""Characters of a response body the page shows."""


@dataclass(frozen=True, slots=True)
class Availability:
    """The share of a span's runs that succeeded (None: no runs), and the counts."""

    span: str
    succeeded: int
    counted: int

    @property
    def percent(self) -> float | None:
        """Succeeded runs per hundred that ended as succeeded or failed."""
        return 100 * self.succeeded / self.counted if self.counted else None


async def availability(store: Store, job: str) -> list[Availability]:
    """`job`'s availability over each of `WINDOWS`: cancelled and skipped runs not counted."""
    now, found = utcnow(), []
    for span, length in WINDOWS:
        counts = await store.count_job_runs(job, now - length)
        ok = counts.get(RunStatus.SUCCEEDED, 0)
        found.append(Availability(span, ok, ok + counts.get(RunStatus.FAILED, 0)))
    return found


def sent_result(run: Run) -> dict[str, Any]:
    """What "send now" shows of a run: its status and the last attempt's answer."""
    last = run.steps[-1] if run.steps else None
    body = "\n".join(last.output_tail) if last else ""
    return {
        "run": run,
        "attempt": last,
        "body": body[:EXCERPT_CHARS],
        "cut": len(body) > EXCERPT_CHARS,
    }


async def _sent(store: Store, target: Target, run_id: str | None) -> dict[str, Any] | None:
    if not run_id:
        return None
    try:
        run = await store.get_run(run_id)
    except NotFound:
        return None
    return sent_result(run) if run.job == TARGET_JOB_PREFIX + target.id else None


async def target_page(request: web.Request) -> web.Response:
    """GET /ui/targets/{id}: definition, chart, availability, schedules, send now."""
    store = request.app[STORE]
    target = await store.get_target(request.match_info["id"])
    job = TARGET_JOB_PREFIX + target.id
    runs = await store.list_runs(job=job, limit=CHART_RUNS)
    context = {
        "target": target,
        "url": redact(target.url),
        "headers": redact(target.headers),
        "chart": response_chart(runs),
        "availability": await availability(store, job),
        "schedules": await store.list_schedules(target_id=target.id, limit=50),
        "recent": await run_rows(Names(store), runs[:10]),
        "sent": await _sent(store, target, request.query.get("sent")),
    }
    return render(request, "ui_target.html", context)


async def send_target(request: web.Request) -> web.Response:
    """POST /ui/targets/{id}/send: have the daemon send the request once, wait for its
    answer (as long as the request may take), and show it on the target's page."""
    store = request.app[STORE]
    target = await store.get_target(request.match_info["id"])
    page = f"{P}/targets/{target.id}"
    try:
        run = await request_target_run(
            store, request.app[CONTROL], target, "the Start button on the overview"
        )
    except CronmgrError as exc:
        return with_flash(page, "error", exc.detail)
    try:
        async with asyncio.timeout(_longest_send(target)):
            ended = await _wait_for_end(store, run.id)
    except TimeoutError:
        ended = None
    if ended is None:
        message = f"Sent (run {run.id}); no answer yet: its run shows it when it comes"
        return with_flash(f"{page}?sent={run.id}#sent", "ok", message)
    return with_flash(f"{page}?sent={run.id}#sent", "ok", f"Target {target.name} sent")


def _longest_send(target: Target) -> float:
    """How long one send may take: each attempt's timeout and the waits between them."""
    retry = target.retry
    attempts = retry.max_attempts
    waits = (attempts - 1) * retry.backoff_max_seconds
    took = attempts * target.timeout_seconds + waits + SEND_WAIT_MARGIN_SECONDS
    return min(took, SEND_WAIT_MAX_SECONDS)


async def _wait_for_end(store: Store, run_id: str) -> Run:
    """The run once it ended (the caller bounds the wait)."""
    delay = 0.02
    while True:
        run = await store.get_run(run_id)
        if run.status.finished:
            return run
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
