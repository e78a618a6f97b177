"""Whether a schedule written now will fire: the note the API and the dashboard give when
no daemon runs to fire it.

A schedule is stored whether a daemon runs or not; the controller never fires it. A person
who creates one (as the API Scheduler's examples do) and sees no run needs to be told
that the daemon is what fires it. "No daemon" means neither this host's daemon nor any
live node of the store: with PostgreSQL, a daemon on another host fires it too.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from cronmgr.controller.keys import CONTROL, STORE
from cronmgr.core.models import Schedule, ScheduleStatus, utcnow
from cronmgr.observability.nodes import is_up

DAEMON_NOT_RUNNING_WARNING = "the daemon is not running: this schedule fires once it starts"
"""The warning on a schedule created or resumed while no daemon runs (API and dashboard)."""


async def daemon_runs(app: web.Application) -> bool:
    """Whether a daemon fires schedules of this store: this host's, or a live node's."""
    if await asyncio.to_thread(app[CONTROL].is_running):
        return True
    now = utcnow()
    return any(is_up(node, now) for node in await app[STORE].list_nodes())


async def schedule_warnings(app: web.Application, schedule: Schedule) -> list[str]:
    """The warnings of an answer that wrote `schedule`: `DAEMON_NOT_RUNNING_WARNING` when
    it is active and no daemon runs to fire it, else none."""
    if schedule.status is not ScheduleStatus.ACTIVE or await daemon_runs(app):
        return []
    return [DAEMON_NOT_RUNNING_WARNING]
