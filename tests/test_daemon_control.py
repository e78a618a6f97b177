"""The daemon-control API against a real controller, real daemons and real steps."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from support import Controller, wait_for

from cronmgr.controller.supervisor import Supervisor
from cronmgr.core.config import load_settings
from cronmgr.core.launch import LaunchSpec
from cronmgr.core.pidfile import inspect, read_record


def log_events(controller: Controller) -> list[dict[str, Any]]:
    """Every JSON event in the daemon's log file."""
    path = controller.settings.log_file
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def events_named(controller: Controller, name: str) -> list[dict[str, Any]]:
    """The log events with `event == name`."""
    return [e for e in log_events(controller) if e.get("event") == name]


async def start(http: aiohttp.ClientSession, **body: Any) -> dict[str, Any]:
    """POST /api/cron/start and insist on 200."""
    async with http.post("/api/cron/start", json=body) as resp:
        data = await resp.json()
        assert resp.status == 200, data
        return dict(data)


async def status(http: aiohttp.ClientSession) -> dict[str, Any]:
    """GET /api/cron/status."""
    async with http.get("/api/cron/status") as resp:
        assert resp.status == 200
        return dict(await resp.json())


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live, non-zombie process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pid_in(path: Path) -> int | None:
    """The pid a step wrote to `path`; None while the file is missing or still empty."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def test_start_reports_a_detached_running_daemon(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """Start answers with the seed's shape; the daemon is no child of the controller."""
    data = await start(http, interval_seconds=60)
    assert data["success"] is True
    assert f"(PID: {data['pid']})" in data["message"]
    assert "interval: 60 seconds" in data["message"]
    state = await status(http)
    assert state["is_running"] is True
    assert state["pid"] == data["pid"]
    assert state["message"] == f"Daemon is running (PID: {data['pid']})"
    for field in ("uptime_seconds", "cpu_percent", "memory_rss_bytes", "children", "version"):
        assert field in state
    daemon = psutil.Process(data["pid"])
    assert controller.process is not None
    assert daemon.ppid() != controller.process.pid
    assert os.getsid(daemon.pid) != os.getsid(controller.process.pid)
    record = read_record(controller.settings.pid_file)
    assert record is not None and record.pid == daemon.pid
    assert abs(record.create_time - daemon.create_time()) < 0.05


async def test_the_log_holds_the_pipeline_events_with_run_and_step(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """Each step's start, output lines and finish are JSON events carrying run_id and step."""
    await start(http, interval_seconds=60, pipeline="quick")
    finished = wait_for(lambda: events_named(controller, "run_finished"), what="a run")
    run_id = finished[0]["run_id"]
    assert finished[0]["status"] == "succeeded"
    output = [e for e in events_named(controller, "step_output") if e["run_id"] == run_id]
    assert [e["line"] for e in output] == ["hello from quick"]
    assert output[0]["step"] == "hello"
    step_finished = events_named(controller, "step_finished")[0]
    assert step_finished["run_id"] == run_id and step_finished["exit_code"] == 0


async def test_double_start_answers_409(http: aiohttp.ClientSession) -> None:
    """A second start while the daemon runs is a conflict, and the first daemon stays."""
    first = await start(http, interval_seconds=60, pipeline="quick")
    async with http.post("/api/cron/start", json={"interval_seconds": 60}) as resp:
        body = await resp.json()
        assert resp.status == 409
        assert body["error"] is True and str(first["pid"]) in body["detail"]
    assert (await status(http))["pid"] == first["pid"]


async def test_stop_is_idempotent(http: aiohttp.ClientSession) -> None:
    """Stop answers success whether or not the daemon runs."""
    await start(http, interval_seconds=60, pipeline="quick")
    for expected in ("Daemon stopped successfully", "Daemon is not running"):
        async with http.post("/api/cron/stop") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["success"] is True
            assert body["message"] == expected
    assert (await status(http))["is_running"] is False


async def test_stop_kills_a_running_step_and_its_grandchildren(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """Stop during a step that never ends: the step and its background sleeper die."""
    state_dir = controller.settings.state_path
    daemon_pid = (await start(http, interval_seconds=60, pipeline="slow"))["pid"]
    sleeper = wait_for(lambda: pid_in(state_dir / "slow-sleeper.pid"), what="the sleeper")
    step = wait_for(lambda: pid_in(state_dir / "slow-step.pid"), what="the step")
    assert pid_alive(sleeper) and pid_alive(step)
    async with http.post("/api/cron/stop") as resp:
        assert resp.status == 200
    for pid in (daemon_pid, step, sleeper):
        wait_for(lambda pid=pid: not pid_alive(pid), what=f"pid {pid} to die")
    finished = events_named(controller, "run_finished")
    assert finished and finished[-1]["status"] == "cancelled"


async def test_kill_9_without_supervision_leaves_status_stopped_and_file_cleaned(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """A daemon killed with SIGKILL is reported not running and its PID file removed."""
    pid = (await start(http, interval_seconds=60, pipeline="quick"))["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="the daemon to die")
    state = await status(http)
    assert state["is_running"] is False and state["pid"] is None
    assert not controller.settings.pid_file.exists()


async def test_kill_9_with_supervision_restarts_the_daemon(controller_factory: Any) -> None:
    """The supervisor notices the death and starts a new daemon, counting the restart."""
    controller = controller_factory(
        supervise=True, supervise_poll_seconds=0.2, restart_backoff_seconds=0.2
    )
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        pid = (await start(http, interval_seconds=60, pipeline="quick"))["pid"]
        os.kill(pid, signal.SIGKILL)

        async def restarted() -> dict[str, Any] | None:
            state = await status(http)
            # The new daemon may show in the PID file a moment before its launch returns.
            moved_on = state["is_running"] and state["pid"] != pid and state["restarts"]
            return state if moved_on else None

        state = None
        for _ in range(150):
            state = await restarted()
            if state:
                break
            await wait_async(0.1)
        assert state is not None, "the daemon was not restarted"
        assert state["restarts"] == 1, state
        assert state["last_exit"]["pid"] == pid
        assert state["state"] == "running"


async def wait_async(seconds: float) -> None:
    """Yield to the loop between polls."""
    import asyncio

    await asyncio.sleep(seconds)


async def test_supervisor_gives_up_into_fatal_after_quick_failures(
    controller_factory: Any,
) -> None:
    """A daemon that dies at once, again and again, ends in the fatal state."""
    controller = controller_factory(
        supervise=True,
        supervise_poll_seconds=0.1,
        restart_backoff_seconds=0.1,
        restart_backoff_max_seconds=0.2,
        restart_max_quick_failures=2,
    )
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        await start(http, interval_seconds=60, pipeline="quick")
        # From now on every start fails: the pipeline file is gone. One kill is the first
        # death; each relaunch then fails by itself. (Killing again could hit a relaunch
        # still starting, which would then die "without a word".)
        (controller.settings.pipelines_path / "quick.toml").unlink()
        found = inspect(controller.settings.pid_file)
        assert found.process is not None
        found.process.kill()
        wait_for(lambda p=found.process: not pid_alive(p.pid), what="the kill")
        for _ in range(300):  # 30 s at most: two failed relaunches with their backoff
            state = await status(http)
            if state["state"] == "fatal":
                break
            await wait_async(0.1)
        assert state["state"] == "fatal", state
        assert "quick" in state["last_exit"]["reason"]


async def test_controller_restart_reattaches_to_the_running_daemon(
    controller: Controller,
) -> None:
    """The daemon outlives its controller; a new controller reports and stops it."""
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        pid = (await start(http, interval_seconds=60, pipeline="quick"))["pid"]
    controller.shutdown()
    assert pid_alive(pid)
    controller.start()
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        state = await status(http)
        assert state["is_running"] is True and state["pid"] == pid
        async with http.post("/api/cron/stop") as resp:
            assert (await resp.json())["message"] == "Daemon stopped successfully"
    wait_for(lambda: not pid_alive(pid), what="the daemon to stop")


async def test_start_failure_reports_the_daemons_own_error(
    http: aiohttp.ClientSession,
) -> None:
    """A pipeline that does not exist makes start fail with that reason, not 'started': a
    422 naming the field, since it is the request's fault (checked before any launch)."""
    async with http.post("/api/cron/start", json={"pipeline": "no-such-pipeline"}) as resp:
        body = await resp.json()
        assert resp.status == 422
        assert "no-such-pipeline" in body["detail"]
    assert (await status(http))["is_running"] is False


async def test_start_failure_on_an_unwritable_log_directory(controller_factory: Any) -> None:
    """The daemon cannot open its log: start fails and says which path."""
    controller = controller_factory()
    blocker = controller.settings.log_path
    blocker.mkdir(parents=True, exist_ok=True)
    log_file = controller.settings.log_file
    log_file.unlink(missing_ok=True)
    log_file.mkdir()  # a directory where the log file should be
    async with (
        aiohttp.ClientSession(controller.url, headers=controller.headers) as http,
        http.post("/api/cron/start", json={"pipeline": "quick"}) as resp,
    ):
        body = await resp.json()
        assert resp.status == 503, body
        assert str(log_file) in body["detail"]


async def test_stale_pid_file_is_reported_and_removed(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """A PID file naming a recycled pid (live process, other create time) is stale."""
    pid_file = controller.settings.pid_file
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n12345.0\n")
    state = await status(http)
    assert state["is_running"] is False
    assert "stale" in state["message"] and "reused" in state["message"]
    assert not pid_file.exists()
    await start(http, interval_seconds=60, pipeline="quick")


async def test_restart_replaces_the_daemon(http: aiohttp.ClientSession) -> None:
    """Restart stops the old daemon and starts a new one with the new interval."""
    old = (await start(http, interval_seconds=60, pipeline="quick"))["pid"]
    async with http.post("/api/cron/restart", json={"interval_seconds": 30}) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["pid"] != old
        assert body["interval_seconds"] == 30 and body["pipeline"] == "quick"
    assert not pid_alive(old)


async def test_clear_logs_truncates_while_the_daemon_keeps_writing(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """After DELETE /api/cron/logs the daemon's next lines land at the start of the file."""
    await start(http, interval_seconds=60, pipeline="quick")
    wait_for(lambda: events_named(controller, "run_finished"), what="a first run")
    inode = controller.settings.log_file.stat().st_ino
    async with http.delete("/api/cron/logs") as resp:
        assert (await resp.json())["message"] == "Logs cleared successfully"
    async with http.post("/api/cron/reload") as resp:  # SIGHUP makes the daemon log
        assert resp.status == 200
    wait_for(lambda: events_named(controller, "daemon_reloaded"), what="the reload event")
    data = controller.settings.log_file.read_bytes()
    assert b"\x00" not in data and data.startswith(b"{")
    assert controller.settings.log_file.stat().st_ino == inode
    async with http.get("/api/cron/logs/tail", params={"lines": "5"}) as resp:
        assert resp.content_type == "text/plain"
        assert "daemon_reloaded" in await resp.text()


async def test_logs_endpoints_return_the_seed_shapes(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """`logs` answers {logs, line_count}; `tail` plain text; both bounded by `lines`."""
    log_file = controller.settings.log_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("".join(f'{{"n": {i}}}\n' for i in range(3000)))
    async with http.get("/api/cron/logs", params={"lines": "20"}) as resp:
        body = await resp.json()
        assert body["line_count"] == 20
        assert body["logs"].splitlines()[-1] == '{"n": 2999}'
    async with http.get("/api/cron/logs") as resp:  # the seed's "get all logs"
        body = await resp.json()
        assert body == {"logs": log_file.read_text(), "line_count": 3000}
    async with http.get("/api/cron/logs/tail") as resp:
        assert len((await resp.text()).splitlines()) == 50


async def test_all_logs_stop_at_the_documented_cap_and_say_so(
    controller_factory: Callable[..., Controller],
) -> None:
    """Without `lines` the whole log up to `logs_default_lines`; past it the last lines and
    `truncated: true`. `lines` over `logs_max_lines` is cut and says so too; `lines` below
    the file's length is what was asked for, not a truncation."""
    controller = controller_factory(logs_default_lines=100, logs_max_lines=200)
    log_file = controller.settings.log_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("".join(f'{{"n": {i}}}\n' for i in range(100)))
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        async with http.get("/api/cron/logs") as resp:  # exactly at the cap: all, not cut
            assert await resp.json() == {"logs": log_file.read_text(), "line_count": 100}
        with log_file.open("a") as fh:
            fh.writelines(f'{{"n": {i}}}\n' for i in range(100, 300))
        async with http.get("/api/cron/logs") as resp:
            body = await resp.json()
        assert body["line_count"] == 100 and body["truncated"] is True
        assert body["logs"].splitlines()[0] == '{"n": 200}'
        assert body["logs"].splitlines()[-1] == '{"n": 299}'
        async with http.get("/api/cron/logs", params={"lines": "1000"}) as resp:
            body = await resp.json()
        assert (body["line_count"], body["truncated"]) == (200, True)
        async with http.get("/api/cron/logs", params={"lines": "10"}) as resp:
            body = await resp.json()
        assert body["line_count"] == 10 and "truncated" not in body


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    """`cronmgr serve --host 0.0.0.0` without a configured token exits with a reason."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CRONMGR_")}
    env["CRONMGR_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "cronmgr", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert b"non-loopback" in result.stderr and b"CRONMGR_API_TOKEN" in result.stderr


async def read_runs(controller: Controller) -> list[Any]:
    """Every run in the controller's SQLite store, newest first, with steps."""
    from cronmgr.store import open_store

    async with open_store(controller.settings.store_url) as store:
        runs = await store.list_runs(limit=100)
        return [await store.get_run(r.id) for r in runs]


async def test_runs_and_step_results_are_recorded_in_the_store(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """A finished run is in SQLite with its slot, status and per-step result."""
    await start(http, interval_seconds=60, pipeline="quick")
    wait_for(lambda: events_named(controller, "run_finished"), what="a run")
    runs = await read_runs(controller)
    assert [r.status.value for r in runs] == ["succeeded"]
    (step,) = runs[0].steps
    assert step.step == "hello" and step.exit_code == 0
    assert step.output_tail and "hello from quick" in step.output_tail[-1]
    assert runs[0].schedule_id == "daemon-interval" and runs[0].trigger.value == "schedule"


async def test_a_run_orphaned_by_kill_9_is_failed_on_the_next_start(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """kill -9 mid-run leaves no run 'running': the next daemon marks it failed, with why."""
    state_dir = controller.settings.state_path
    pid = (await start(http, interval_seconds=60, pipeline="slow"))["pid"]
    wait_for(lambda: pid_in(state_dir / "slow-sleeper.pid"), what="the slow step")
    step_pid = wait_for(lambda: pid_in(state_dir / "slow-step.pid"), what="the step's pid")
    os.kill(pid, signal.SIGKILL)
    os.killpg(step_pid, signal.SIGKILL)  # what a reboot would do to the step
    wait_for(lambda: not pid_alive(pid), what="the daemon to die")
    assert [r.status.value for r in await read_runs(controller)] == ["running"]
    await start(http, interval_seconds=60, pipeline="quick")
    wait_for(lambda: events_named(controller, "run_finished"), what="the quick run")
    orphan = (await read_runs(controller))[-1]
    assert orphan.job == "pipeline:slow" and orphan.status.value == "failed"
    assert orphan.error == "the daemon stopped before this run finished"


async def test_sighup_reload_picks_up_an_edited_pipeline(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """After editing the file, reload makes the next run use the new definition."""
    await start(http, interval_seconds=60, pipeline="quick")
    wait_for(lambda: events_named(controller, "run_finished"), what="a run")
    pipeline_file = controller.settings.pipelines_path / "quick.toml"
    pipeline_file.write_text(pipeline_file.read_text().replace("hello from quick", "hello again"))
    async with http.post("/api/cron/reload") as resp:
        assert resp.status == 200
    wait_for(lambda: events_named(controller, "daemon_reloaded"), what="the reload")
    async with http.post("/api/cron/restart", json={}) as resp:
        assert resp.status == 200
    wait_for(
        lambda: any(e["line"] == "hello again" for e in events_named(controller, "step_output")),
        what="the edited step's output",
    )


async def test_a_new_controller_resumes_a_daemon_that_should_be_running(
    controller_factory: Any,
) -> None:
    """After a reboot-like loss of both, the controller starts the daemon it was asked for."""
    controller = controller_factory(supervise=True)
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        pid = (await start(http, interval_seconds=45, pipeline="quick"))["pid"]
    controller.shutdown()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), what="the daemon to die")
    controller.start()
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        state = await status(http)
        assert state["is_running"] is True and state["pid"] != pid
        assert state["interval_seconds"] == 45 and state["pipeline"] == "quick"
        async with http.post("/api/cron/stop") as resp:
            assert resp.status == 200
    controller.shutdown()
    controller.start()  # stopped on purpose: stays stopped
    async with aiohttp.ClientSession(controller.url, headers=controller.headers) as http:
        assert (await status(http))["is_running"] is False


async def poll_async(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Like `wait_for`, but yielding to the event loop between polls."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return value


async def test_start_without_an_interval_runs_every_120_seconds(
    http: aiohttp.ClientSession,
) -> None:
    """The seed's default interval: start with no `interval_seconds` means every 120 s."""
    data = await start(http, pipeline="quick")
    assert data["interval_seconds"] == 120
    assert "interval: 120 seconds" in data["message"]
    state = await status(http)
    assert state["is_running"] is True
    assert (state["interval_seconds"], state["pipeline"]) == (120, "quick")


# A step that holds on until the test has seen the daemon get SIGTERM, then takes a second
# more: it finishes during the stop grace, so the stop must wait for it, not cancel it.
GRACEFUL_PIPELINE = """
description = "a step that ends a second after the test releases it"

[[steps]]
name = "finish-in-time"
shell = '''
touch "$CRONMGR_STATE_DIR/graceful.started"
while [ ! -e "$CRONMGR_STATE_DIR/graceful.release" ]; do sleep 0.05; done
sleep 1
echo finished
'''
timeout_seconds = 120
"""


async def test_a_step_finishing_within_the_stop_grace_is_recorded_succeeded(
    controller: Controller, http: aiohttp.ClientSession
) -> None:
    """Stop during a step that needs ~1 s more (grace 3 s): the run ends `succeeded`."""
    assert controller.settings.stop_grace_seconds == 3.0
    state_dir = controller.settings.state_path
    (controller.settings.pipelines_path / "graceful.toml").write_text(GRACEFUL_PIPELINE)
    await start(http, interval_seconds=60, pipeline="graceful")
    await poll_async(lambda: (state_dir / "graceful.started").exists(), "the step to start")

    async def stop() -> dict[str, Any]:
        async with http.post("/api/cron/stop") as resp:
            assert resp.status == 200
            return dict(await resp.json())

    stopping = asyncio.create_task(stop())
    await poll_async(lambda: events_named(controller, "daemon_stopping"), "the daemon's SIGTERM")
    (state_dir / "graceful.release").touch()  # the step has ~1 s left from here
    assert (await stopping)["message"] == "Daemon stopped successfully"

    (run,) = [r for r in await read_runs(controller) if r.job == "pipeline:graceful"]
    assert run.status.value == "succeeded", run
    (step,) = run.steps
    assert step.status.value == "succeeded" and step.exit_code == 0
    assert step.output_tail[-1] == "stdout: finished"
    assert not events_named(controller, "runs_cancelled")


# --- the supervisor's backoff, as a unit ------------------------------------------------------


def supervisor(tmp_path: Path, **overrides: Any) -> Supervisor:
    """A Supervisor with supervision on and the given restart settings."""
    return Supervisor(load_settings(env={}, home=tmp_path, supervise=True, **overrides))


SPEC = LaunchSpec(60, "quick")


async def test_supervisor_delay_doubles_with_each_quick_failure_up_to_the_cap(
    tmp_path: Path,
) -> None:
    """0.5 s, 1 s, 2 s, then the 3 s cap, however many more failures follow."""
    sup = supervisor(
        tmp_path,
        restart_backoff_seconds=0.5,
        restart_backoff_max_seconds=3.0,
        restart_max_quick_failures=10,
    )
    sup.started(4242, SPEC)
    assert sup.died("killed by SIGKILL") == SPEC  # lived far less than 30 s: quick
    delays = [sup.delay()]
    for _ in range(5):
        assert sup.failed_restart("the daemon exited during start-up") == SPEC
        delays.append(sup.delay())
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert sup.state_name(running=False) == "backoff"
    assert sup.report()["quick_failures"] == 6


async def test_supervisor_delay_starts_over_after_a_daemon_that_lived_long_enough(
    tmp_path: Path,
) -> None:
    """A death after `restart_min_uptime_seconds` is not quick: back to the first delay."""
    sup = supervisor(tmp_path, restart_backoff_seconds=1.0, restart_min_uptime_seconds=0)
    sup.started(1, SPEC)
    sup.died("crashed")
    for _ in range(3):
        sup.failed_restart("boom")
    assert sup.delay() == 8.0
    sup.started(2, SPEC, restart=True)
    assert sup.died("crashed again") == SPEC
    assert sup.delay() == 1.0
    assert sup.report()["restarts"] == 1


async def test_supervisor_gives_up_after_too_many_quick_failures(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, restart_max_quick_failures=2)
    sup.started(1, SPEC)
    assert sup.died("crashed") == SPEC
    assert sup.failed_restart("boom") == SPEC
    assert sup.failed_restart("boom") is None
    assert sup.state_name(running=False) == "fatal"
    assert sup.last_exit is not None and sup.last_exit["reason"] == "boom"


async def test_a_requested_stop_resets_the_backoff(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, restart_backoff_seconds=1.0)
    sup.started(1, SPEC)
    sup.died("crashed")
    sup.failed_restart("boom")
    assert sup.delay() == 2.0
    sup.stopped()
    assert sup.delay() == 1.0
    assert sup.state_name(running=False) == "stopped"
