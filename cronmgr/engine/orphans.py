"""Step processes a killed daemon left behind: found, told from recycled pids, ended.

A daemon killed with SIGKILL cannot stop its steps: their process groups live on,
reparented to init. The next daemon ends them before it marks their runs failed. A group
is found two ways: by the record each step's start commits (`Store.record_step_group`)
and, for a step whose daemon died before that record committed, by the `CRONMGR_RUN_ID`
every step process inherits. A group is ended only when it is provably the step's: its
leader is alive with the recorded create time, or one of its members carries the run's id
(while any member lives, no new process can be given the group's id).

Members are the live processes whose process group or session is the step's (a step's
leader starts a session, so a process that left the group with setpgid is still found).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psutil
import structlog

from cronmgr.core.errors import NotFound
from cronmgr.core.models import RunStatus, utcnow
from cronmgr.store.base import Store
from cronmgr.store.records import StepGroup

log = structlog.get_logger("cronmgr.orphans")

RUN_ID_ENV = "CRONMGR_RUN_ID"
ORPHAN_REASON = "daemon was killed while the run was in flight; its step processes were ended"
"""The error of a run whose step processes a dead daemon left and the next one ended."""
# A create time is boot time plus clock ticks (1/100 s): the same process reads the same.
_CREATED_TOLERANCE = 0.005
_REAP_SECONDS = 2.0
_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Seen:
    """One live process as the scan saw it."""

    proc: psutil.Process
    pgid: int
    sid: int
    created: float
    run_id: str | None


@dataclass(frozen=True, slots=True)
class OrphanGroup:
    """A step's process group that outlived its daemon, with its members when found."""

    run_id: str
    pgid: int
    leader_created: float | None
    members: tuple[Seen, ...]


def scan() -> list[Seen]:
    """Every live (not zombie) process but this one, with its group, session and run id."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(OSError, psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            pgid, sid = os.getpgid(proc.pid), os.getsid(proc.pid)
            found.append(Seen(proc, pgid, sid, proc.create_time(), _run_id_of(proc)))
    return found


def _run_id_of(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get(RUN_ID_ENV)
    except psutil.Error:  # another user's process, or gone: not one of our steps
        return None


def members_of(pgid: int, seen: Iterable[Seen]) -> tuple[Seen, ...]:
    """The processes in group or session `pgid`."""
    return tuple(s for s in seen if pgid in (s.pgid, s.sid))


def is_the_steps(group: StepGroup, members: Sequence[Seen]) -> bool:
    """Whether `members` are provably the step's processes, not a recycled pid's group."""
    return any(m.run_id == group.run_id or _is_leader(m, group) for m in members)


def _is_leader(member: Seen, group: StepGroup) -> bool:
    created = group.leader_created
    return (
        member.proc.pid == group.pgid
        and created is not None
        and abs(member.created - created) < _CREATED_TOLERANCE
    )


def find_orphans(
    recorded: Sequence[StepGroup], unfinished_runs: set[str], seen: Sequence[Seen]
) -> list[OrphanGroup]:
    """The groups to end: recorded ones that are provably the step's, and the sessions of
    processes carrying the id of an unfinished run (a group that went unrecorded, or a
    process that left its step's session)."""
    groups: dict[int, OrphanGroup] = {}
    for group in recorded:
        members = members_of(group.pgid, seen)
        if members and is_the_steps(group, members):
            groups[group.pgid] = OrphanGroup(*group, members)
    for member in seen:
        run_id = member.run_id
        # By session: every step leads one, which its processes stay in unless they setsid.
        if run_id is not None and run_id in unfinished_runs and member.sid not in groups:
            members = members_of(member.sid, seen)
            groups[member.sid] = OrphanGroup(run_id, member.sid, None, members)
    return list(groups.values())


def carried_run_ids(seen: Iterable[Seen]) -> set[str]:
    """The run ids the scanned processes carry in their environment."""
    return {s.run_id for s in seen if s.run_id is not None}


async def end_group(group: OrphanGroup, grace: float) -> int:
    """SIGTERM the group's members, SIGKILL what is left after `grace`; how many there were.

    The members seen are signalled through psutil, which checks each one is still the
    process seen; the group as a whole too, to reach what it forked since (its id cannot
    have been recycled while those members lived).
    """
    for sig in (signal.SIGTERM, signal.SIGCONT):  # a stopped process sees SIGTERM once continued
        _signal(group, sig)
    if not await _wait_gone(group.pgid, grace):
        _signal(group, signal.SIGKILL)
        await _wait_gone(group.pgid, _REAP_SECONDS)
    return len(group.members)


def _signal(group: OrphanGroup, sig: int) -> None:
    for member in group.members:
        with contextlib.suppress(psutil.Error):
            member.proc.send_signal(sig)
    if any(m.proc.pid == group.pgid or m.pgid == group.pgid for m in group.members):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group.pgid, sig)
    # Members seen later in the session only (setpgid) and not in the group: one by one.
    for member in members_of(group.pgid, scan()):
        if member.pgid != group.pgid and member.sid == group.pgid:
            with contextlib.suppress(psutil.Error):
                member.proc.send_signal(sig)


async def _wait_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while members_of(pgid, await asyncio.to_thread(scan)):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True


async def end_orphans(store: Store, grace: float, node_id: str | None) -> list[OrphanGroup]:
    """End the step groups a dead daemon of node `node_id` left, fail their runs saying
    so; the groups. (Another node's groups are its own, even on the same host.)

    Call it before the runs left running are failed: their records go with their end.
    """
    recorded = [g for g in await store.list_step_groups() if await _ours(store, g, node_id)]
    seen = await asyncio.to_thread(scan)
    known = {group.run_id for group in recorded}
    carried = carried_run_ids(seen) - known
    unfinished = known | {r for r in carried if await _unfinished(store, r, node_id)}
    groups = find_orphans(recorded, unfinished, seen)
    await asyncio.gather(*(_end_and_log(group, grace) for group in groups))
    for run_id in dict.fromkeys(group.run_id for group in groups):
        await store.update_run(run_id, RunStatus.FAILED, finished_at=utcnow(), error=ORPHAN_REASON)
    return groups


async def end_remaining(groups: Sequence[OrphanGroup], grace: float) -> int:
    """End what is still alive of groups ended before (a stop after the start that ended
    them); how many groups had members left."""
    if not groups:
        return 0
    seen = await asyncio.to_thread(scan)
    left = []
    for group in groups:
        members = members_of(group.pgid, seen)
        if members and is_the_steps(
            StepGroup(group.run_id, group.pgid, group.leader_created), members
        ):
            left.append(OrphanGroup(group.run_id, group.pgid, group.leader_created, members))
    await asyncio.gather(*(_end_and_log(group, grace) for group in left))
    return len(left)


async def _end_and_log(group: OrphanGroup, grace: float) -> None:
    count = await end_group(group, grace)
    log.warning("orphan_group_killed", run_id=group.run_id, pgid=group.pgid, count=count)


async def _ours(store: Store, group: StepGroup, node_id: str | None) -> bool:
    try:
        run = await store.get_run(group.run_id)
    except NotFound:
        return False
    return run.node_id in (None, node_id)


async def _unfinished(store: Store, run_id: str, node_id: str | None) -> bool:
    try:
        run = await store.get_run(run_id)
    except NotFound:
        return False
    return run.status in (RunStatus.PENDING, RunStatus.RUNNING) and run.node_id in (None, node_id)
