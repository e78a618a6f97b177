"""Orphaned step groups (cronmgr/orphans.py) against real processes in sessions of their
own, as steps are: what is provably a step's is found and ended, a recycled pid's is not."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from support import until

from cronmgr.core.models import new_id
from cronmgr.engine.orphans import OrphanGroup, end_remaining, find_orphans, scan
from cronmgr.store.records import StepGroup


@pytest.fixture
def session_leader(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start sleepers in sessions of their own (as steps are), killed after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "300"], start_new_session=True, env=env, cwd=tmp_path)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_recorded_group_is_ended_only_when_its_leader_is_provably_the_steps(
    session_leader: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The recorded create time tells the step's leader from a process given its pid later;
    a process carrying the run's id is the step's whatever its pid; a stranger is neither."""
    run_id = new_id()
    proc = session_leader({"PATH": os.environ["PATH"]})
    created = psutil.Process(proc.pid).create_time()
    seen = scan()
    assert find_orphans([StepGroup(run_id, proc.pid, created)], {run_id}, seen)[0].pgid == proc.pid
    recycled = StepGroup(run_id, proc.pid, created - 3600)
    assert find_orphans([recycled], {run_id}, seen) == []
    assert find_orphans([StepGroup(run_id, proc.pid, None)], {run_id}, seen) == []


def test_processes_carrying_an_unfinished_runs_id_are_found_without_a_record(
    session_leader: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A step whose record never committed is found by its environment, and only for the
    runs asked about."""
    run_id = new_id()
    proc = session_leader({"PATH": os.environ["PATH"], "CRONMGR_RUN_ID": run_id})
    seen = scan()
    (group,) = find_orphans([], {run_id}, seen)
    assert (group.run_id, group.pgid, [m.proc.pid for m in group.members]) == (
        run_id,
        proc.pid,
        [proc.pid],
    )
    assert find_orphans([], {new_id()}, seen) == []
    # A recorded group whose create time is off is still the step's when it carries the id.
    assert find_orphans([StepGroup(run_id, proc.pid, 0.0)], set(), seen)[0].pgid == proc.pid


async def test_what_is_left_of_an_inherited_group_is_ended_again(
    session_leader: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A stop ends what still lives of the groups its start inherited (here: all of one,
    as if the start's ending had missed it), and leaves a recycled pid's group alone."""
    run_id = new_id()
    env = {"PATH": os.environ["PATH"], "CRONMGR_RUN_ID": run_id}
    proc = session_leader(env)
    stranger = session_leader({"PATH": os.environ["PATH"]})
    created = psutil.Process(proc.pid).create_time()
    inherited = [
        OrphanGroup(run_id, proc.pid, created, ()),
        # A group whose leader's pid was given to another process since.
        OrphanGroup(run_id, stranger.pid, created - 60, ()),
    ]
    assert await end_remaining(inherited, 0.5) == 1
    await until(lambda: proc.poll() is not None, timeout=5, what="the inherited group to end")
    assert stranger.poll() is None
