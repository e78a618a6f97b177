"""The `cronmgr` command: serve the controller, run the daemon, talk to a running controller.

Exit codes: 0 success, 1 the API or the operation failed (the error's detail goes to
stderr), 2 bad usage or configuration, 3 the controller cannot be reached, 130 Ctrl-C
(except for `logs -f`, which Ctrl-C is meant to end: 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
import structlog

from cronmgr.core.config import ENV_PREFIX, Settings, load_settings
from cronmgr.core.errors import ConfigError, ControllerUnreachable, CronmgrError, NotFound
from cronmgr.core.specs.queries import MIN_INTERVAL_SECONDS
from cronmgr.core.version import __version__

if TYPE_CHECKING:
    from cronmgr.client import Client
    from cronmgr.core.models import RunStatus, StepResult
    from cronmgr.core.pipelines.pipeline import Pipeline
    from cronmgr.core.pipelines.steps import CommandStep

log = structlog.get_logger("cronmgr.cli")

Command = Callable[[argparse.Namespace, Settings], int]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
FIRE_TIMES_SHOWN = 5


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(
        prog="cronmgr", description="Pipeline daemon controller: serve the API and drive it."
    )
    parser.add_argument("--version", action="version", version=f"cronmgr {__version__}")
    parser.add_argument("--config", type=Path, help="TOML config file (env CRONMGR_CONFIG)")
    parser.add_argument("--home", type=Path, help="base directory (env CRONMGR_HOME)")
    _add_connection_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the controller (REST API) in the foreground")
    serve.add_argument("--host", help="listen address (env CRONMGR_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (env CRONMGR_PORT, default 8000)")
    serve.set_defaults(func=cmd_serve)

    daemon = sub.add_parser("daemon", help=argparse.SUPPRESS)
    daemon.add_argument("--ready-fd", type=int)
    daemon.add_argument("--interval", type=int, required=True)
    daemon.add_argument("--pipeline", required=True)
    daemon.set_defaults(func=cmd_daemon)

    _add_client_commands(sub)
    _add_validate(sub)
    _add_run(sub)
    _hide_suppressed(sub)
    return parser


def _hide_suppressed(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # argparse lists a subcommand added with help=SUPPRESS as "==SUPPRESS==" instead of
    # hiding it; drop it from the listing (it still parses).
    sub._choices_actions = [a for a in sub._choices_actions if a.help != argparse.SUPPRESS]


def _add_connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--url",
        default=default,
        help="controller URL (default: http://HOST:PORT from the settings, "
        "http://127.0.0.1:8000 unless configured)",
    )
    parser.add_argument(
        "--token",
        default=default,
        help="API token (default: CRONMGR_API_TOKEN, else the api-token file in the "
        "state directory)",
    )


def _connection_parent() -> argparse.ArgumentParser:
    # Accept --url/--token after the command too. SUPPRESS keeps a value given before the
    # command from being overwritten by the subcommand's default.
    parent = argparse.ArgumentParser(add_help=False)
    _add_connection_options(parent, default=argparse.SUPPRESS)
    return parent


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    func: Command,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, help=summary, description=summary[:1].upper() + summary[1:] + ".", **kwargs
    )
    parser.set_defaults(func=func)
    return parser


def _add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add = functools.partial(_command, sub, parents=[_connection_parent()])
    start = add("start", "start the daemon through the controller", cmd_start)
    _add_launch_options(start, restart=False)
    restart = add(
        "restart", "stop the daemon, then start it (last settings unless given)", cmd_restart
    )
    _add_launch_options(restart, restart=True)
    add("stop", "stop the daemon (fine when it is not running)", cmd_stop)
    add("reload", "make the daemon re-read its pipeline and reopen its log file", cmd_reload)
    status = add("status", "show whether the daemon runs, and how", cmd_status)
    status.add_argument("--json", action="store_true", help="print the raw status as JSON")
    logs = add("logs", "print the daemon's last log lines", cmd_logs)
    logs.add_argument(
        "-n",
        "--lines",
        type=_positive_int,
        default=50,
        metavar="N",
        help="how many lines from the end (default 50)",
    )
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    _add_log_filters(logs)
    add("clear-logs", "empty the daemon's log file", cmd_clear_logs)


def _add_log_filters(parser: argparse.ArgumentParser) -> None:
    filters = parser.add_argument_group("filters (the lines must pass all that are given)")
    filters.add_argument(
        "--level",
        choices=("debug", "info", "warning", "error", "critical"),
        type=str.lower,
        help="only this level or a more severe one",
    )
    filters.add_argument("--run", metavar="RUN_ID", help="only the lines of this run")
    filters.add_argument(
        "--schedule", metavar="SCHEDULE_ID", help="only the lines of this schedule"
    )
    filters.add_argument(
        "--event",
        action="append",
        metavar="NAME",
        help="only this event (repeat for several)",
    )
    filters.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only lines from then on: an ISO 8601 time (no offset: UTC), or an age "
        "such as 90s, 15m, 2h, 1d",
    )


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> str:
    """`--since`: an age (`15m`) becomes the time that long ago; a time is checked."""
    number, unit = value[:-1], value[-1:].lower()
    if unit in _AGE_UNITS and number.replace(".", "", 1).isdigit():
        ago = timedelta(seconds=float(number) * _AGE_UNITS[unit])
        return (datetime.now(UTC) - ago).isoformat()
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither an ISO 8601 time nor an age like 15m"
        ) from None
    return value


def _add_launch_options(parser: argparse.ArgumentParser, *, restart: bool) -> None:
    last = "default: as last started"
    interval_default = last if restart else "default 120 unless configured"
    pipeline_default = last if restart else "default: 'default' unless configured"
    parser.add_argument(
        "--interval",
        type=_interval,
        metavar="N",
        help=f"run the pipeline every N seconds (at least {MIN_INTERVAL_SECONDS}; "
        f"{interval_default})",
    )
    parser.add_argument("--pipeline", metavar="NAME", help=f"pipeline to run ({pipeline_default})")


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = _command(
        sub,
        "validate",
        "check the pipeline files locally (no controller needed) and list their steps",
        cmd_validate,
        epilog="Exits 1 when any pipeline file is invalid.",
    )
    validate.add_argument(
        "--interval",
        type=_interval,
        metavar="N",
        help=f"also show the next {FIRE_TIMES_SHOWN} run times of an every-N-seconds schedule",
    )
    validate.add_argument(
        "--cron",
        metavar="EXPR",
        help="also check a cron expression (5 fields, or 6 with seconds first) and show "
        f"its next {FIRE_TIMES_SHOWN} fire times",
    )
    validate.add_argument(
        "--timezone", metavar="TZ", default="UTC", help="IANA timezone for --cron (default UTC)"
    )


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = _command(
        sub,
        "run",
        "run a pipeline once, now, in the foreground",
        cmd_run,
        epilog="Runs in this process: no controller or daemon is needed, and the run is "
        "not recorded in the store. Prints each step's outcome as it finishes; the log "
        "events (step output included) go to stderr as JSON lines. Steps see the "
        "environment the daemon would give them. Target steps fail: looking a target up "
        "needs the store. Exits 0 when the run succeeded, 1 when it failed, 2 for an "
        "unknown or invalid pipeline.",
    )
    run.add_argument("pipeline", metavar="PIPELINE", help="name of the pipeline to run")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _interval(text: str) -> int:
    value = _positive_int(text)
    if value < MIN_INTERVAL_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_INTERVAL_SECONDS} seconds, not {value}"
        )
    return value


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the controller until SIGTERM or Ctrl-C."""
    from cronmgr.observability import logs

    logs.configure_logging(settings, to_file=False)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    from aiohttp import web

    from cronmgr.controller.app import create_app

    # Handlers first: systemd may send SIGTERM the moment it reads READY=1, and that stop
    # must still be a clean one (STOPPING=1, connections closed), not a death by signal.
    stop = _stop_on_signals()
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        # A short shutdown timeout: open log-follow streams must not hold up a service stop.
        shutdown_timeout=5.0,
        # aiohttp has no header-read timeout. Its keep-alive timer is the bound: armed when
        # a connection opens and again after each answer, not pushed back by the bytes that
        # trickle in, it closes a connection still waiting for a whole request head (a
        # slowloris client). A handler at work is never cut.
        keepalive_timeout=settings.request_head_timeout_seconds,
        # What a client may push before the body, pinned rather than left to whichever
        # aiohttp is installed. The request line may be 64 KiB: a query with every filter
        # at its longest, percent-encoded, must reach the validation that names the field
        # (aiohttp's own 400 for a longer line is plain text); headers keep aiohttp's 8190.
        max_line_size=65536,
        max_field_size=8190,
        max_headers=128,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("controller_listening", url=settings.base_url, token_file=str(settings.token_file))
    _notify_systemd("READY=1")
    try:
        await stop.wait()
    finally:
        _notify_systemd("STOPPING=1")
        await runner.cleanup()
        log.info("controller_stopped")


def _stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _notify_systemd(state: str) -> None:
    # sdnotify does nothing when NOTIFY_SOCKET is unset, so this is safe outside systemd.
    import sdnotify

    with contextlib.suppress(OSError):
        sdnotify.SystemdNotifier().notify(state)


def cmd_daemon(args: argparse.Namespace, settings: Settings) -> int:
    """The daemon's own entry point (launched by the controller)."""
    from cronmgr.core.launch import LaunchSpec
    from cronmgr.engine import daemon

    return daemon.main(settings, LaunchSpec(args.interval, args.pipeline), args.ready_fd)


# --- talking to the controller -----------------------------------------------------------


def _client(args: argparse.Namespace, settings: Settings) -> Client:
    from cronmgr.client import Client

    return Client(args.url, token=args.token, settings=settings)


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start the daemon."""
    with _client(args, settings) as client:
        _say(client.start(args.interval, args.pipeline))
    return EXIT_OK


def cmd_restart(args: argparse.Namespace, settings: Settings) -> int:
    """Stop, then start the daemon."""
    with _client(args, settings) as client:
        _say(client.restart(args.interval, args.pipeline))
    return EXIT_OK


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Stop the daemon."""
    with _client(args, settings) as client:
        _say(client.stop())
    return EXIT_OK


def cmd_reload(args: argparse.Namespace, settings: Settings) -> int:
    """Signal the daemon to reload."""
    with _client(args, settings) as client:
        _say(client.reload())
    return EXIT_OK


def cmd_clear_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Empty the daemon's log."""
    with _client(args, settings) as client:
        _say(client.clear_logs())
    return EXIT_OK


def _say(reply: Mapping[str, Any]) -> None:
    print(reply.get("message", "done"))


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the daemon's status, for people or (--json) for programs."""
    with _client(args, settings) as client:
        status = client.status()
    if args.json:
        print(orjson.dumps(status, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_status(status))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    """Print the last log lines (that pass the filters); with --follow, keep printing new ones."""
    filters = _log_filters(args)
    with _client(args, settings) as client:
        if args.follow:
            return _follow(client, args.lines, filters)
        if filters:
            page = client.log_page(lines=args.lines, **filters)
            sys.stdout.writelines(f"{line}\n" for line in page["lines"])
        else:
            sys.stdout.write(client.tail_logs(args.lines))
    return EXIT_OK


def _log_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given on the command line, as the client's keyword arguments."""
    given = {
        "level": args.level,
        "run_id": args.run,
        "schedule_id": args.schedule,
        "event": args.event,
        "since": args.since,
    }
    return {name: value for name, value in given.items() if value is not None}


def _follow(client: Client, lines: int, filters: Mapping[str, Any]) -> int:
    # Ctrl-C is how a follow ends, so it ends well.
    with contextlib.suppress(KeyboardInterrupt):
        for line in client.follow_logs(lines, **filters):
            print(line, flush=True)
    return EXIT_OK


# --- status for people -----------------------------------------------------------------------


def format_status(status: Mapping[str, Any]) -> str:
    """The status endpoint's answer as aligned `label  value` lines under its message."""
    rows = [
        ("state", status.get("state") or ("running" if status.get("is_running") else "stopped")),
        ("pid", _or_dash(status.get("pid"))),
        ("pipeline", _schedule(status)),
        ("uptime", _maybe(status.get("uptime_seconds"), _duration)),
        ("cpu", _maybe(status.get("cpu_percent"), lambda v: f"{v:.1f} %")),
        ("memory", _maybe(status.get("memory_rss_bytes"), _size)),
        ("restarts", _or_dash(status.get("restarts"))),
        ("last exit", _last_exit(status.get("last_exit"))),
        ("next runs", _next_runs(status.get("next_runs"))),
    ]
    width = max(len(label) for label, _ in rows)
    body = [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join([str(status.get("message", "")), *body])


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _maybe(value: Any, render: Callable[[Any], str]) -> str:
    return "-" if value is None else render(value)


def _schedule(status: Mapping[str, Any]) -> str:
    pipeline, interval = status.get("pipeline"), status.get("interval_seconds")
    if pipeline is None:
        return "-"
    return f"{pipeline}, every {interval} s" if interval else str(pipeline)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n] or ["0s"]
    return " ".join(shown)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _last_exit(last: Any) -> str:
    if not isinstance(last, Mapping):
        return _or_dash(last)
    pid = f" (PID {last['pid']})" if last.get("pid") else ""
    return f"{last.get('at', '?')}: {last.get('reason', 'unknown reason')}{pid}"


def _next_runs(runs: Any) -> str:
    if not runs:
        return "-"
    if not isinstance(runs, list):
        return str(runs)
    return "; ".join(_next_run(run) for run in runs)


def _next_run(run: Any) -> str:
    if not isinstance(run, Mapping):
        return str(run)
    what = run.get("job") or run.get("pipeline")
    return f"{run.get('at', '?')} ({what})" if what else str(run.get("at", "?"))


# --- validate (local) ------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Load every pipeline file, print what was found and what is wrong."""
    from cronmgr.core.pipelines.loading import load_pipelines

    found = load_pipelines(settings.pipelines_path)
    for pipeline in found.pipelines.values():
        print(format_pipeline(pipeline))
    for error in found.errors:
        print(f"cronmgr: invalid pipeline file {error.message}", file=sys.stderr)
    _warn_missing(found.pipelines, settings)
    if args.interval is not None:
        print(format_fire_times(args.interval, datetime.now().astimezone()))
    cron_ok = args.cron is None or _check_cron(args.cron, args.timezone)
    print(
        f"{len(found.pipelines)} pipeline(s) valid, {len(found.errors)} file(s) invalid "
        f"in {settings.pipelines_path}"
    )
    return EXIT_FAILED if found.errors or not found.pipelines or not cron_ok else EXIT_OK


def _check_cron(expression: str, timezone: str) -> bool:
    """Print the cron expression's next fire times, or why it is invalid."""
    from cronmgr.core.triggers.parsing import validate_cron, validate_timezone
    from cronmgr.core.triggers.rules import CronTrigger

    try:
        validate_timezone(timezone)
        validate_cron(expression)
    except ValueError as exc:
        print(f"cronmgr: invalid cron expression {expression!r}: {exc}", file=sys.stderr)
        return False
    trigger = CronTrigger(expression, timezone)
    zone = ZoneInfo(timezone)
    times = trigger.upcoming(datetime.now().astimezone(), FIRE_TIMES_SHOWN)
    shown = _indented(t.astimezone(zone).isoformat(timespec="seconds") for t in times)
    print(f"next {len(times)} fire times of {expression!r} in {timezone}:\n{shown}")
    return True


def _warn_missing(pipelines: Mapping[str, Pipeline], settings: Settings) -> None:
    if not pipelines:
        print(f"cronmgr: no pipeline files (*.toml) in {settings.pipelines_path}", file=sys.stderr)
    elif settings.default_pipeline not in pipelines:
        print(
            f"note: the default pipeline {settings.default_pipeline!r} is not among them; "
            "`cronmgr start` needs --pipeline NAME"
        )


def format_pipeline(pipeline: Pipeline) -> str:
    """A pipeline, its file and its numbered steps."""
    lines = [f"{pipeline.name}  ({pipeline.path})"]
    if pipeline.description:
        lines.append(f"  {pipeline.description}")
    for number, step in enumerate(pipeline.steps, start=1):
        lines.append(f"  {number}. {step.name}: {step.command_line}{_step_notes(step)}")
    if pipeline.schedule is not None:
        lines.append(format_file_schedule(pipeline, datetime.now().astimezone()))
    return "\n".join(lines)


def format_file_schedule(pipeline: Pipeline, now: datetime) -> str:
    """The file's [schedule] in a line, then its next fire times in its timezone."""
    from cronmgr.core.triggers.schedules import upcoming
    from cronmgr.store.pipeline_sync import schedule_from_file

    schedule = schedule_from_file(pipeline)
    declared = pipeline.schedule
    assert declared is not None
    head = (
        f"  schedule: {_when(schedule)} in {schedule.timezone}, "
        f"overlap {schedule.overlap_policy.value}"
    )
    if not declared.enabled:
        return f"{head} (enabled = false: paused)"
    zone = ZoneInfo(schedule.timezone)
    times = upcoming(replace(schedule, created_at=now), FIRE_TIMES_SHOWN, now)
    shown = "\n".join(f"    {t.astimezone(zone).isoformat(timespec='seconds')}" for t in times)
    return f"{head}; next {len(times)} fire times:\n{shown}" if times else f"{head}; no more"


def _when(schedule: Any) -> str:
    if schedule.interval_seconds is not None:
        return f"every {schedule.interval_seconds:g} s"
    if schedule.cron_expression is not None:
        return f"cron {schedule.cron_expression!r}"
    return f"once at {schedule.run_at.isoformat() if schedule.run_at else '?'}"


def _step_notes(step: CommandStep) -> str:
    notes = [step.kind.value] if step.kind.value != "command" else []
    if step.shell is not None:
        notes.append("shell")
    if step.needs is not None:
        notes.append("needs " + (", ".join(step.needs) or "nothing"))
    if step.kind.value == "command":
        notes.append(f"timeout {step.timeout_seconds:g} s")
    if step.retries:
        notes.append(f"{step.retries} retries")
    if step.continue_on_error:
        notes.append("continue on error")
    return "  [" + ", ".join(notes) + "]"


def format_fire_times(interval: int, now: datetime) -> str:
    """The next run times of an every-`interval`-seconds schedule started at `now`."""
    from cronmgr.core.triggers.rules import IntervalTrigger

    # The same anchoring as the daemon: the first run is at start, then every interval.
    trigger = IntervalTrigger(interval, anchor=now)
    times = trigger.upcoming(now, FIRE_TIMES_SHOWN)
    shown = _indented(t.isoformat(timespec="seconds") for t in times)
    return f"next {FIRE_TIMES_SHOWN} runs every {interval} s, starting now:\n{shown}"


def _indented(lines: Iterable[str]) -> str:
    return "\n".join(f"  {line}" for line in lines)


# --- run (local) ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one pipeline once in this process; exit 0 if it succeeded, 1 if not."""
    from cronmgr.core.models import RunStatus
    from cronmgr.core.pipelines.loading import load_pipelines
    from cronmgr.observability import logs

    logs.configure_logging(settings, to_file=False)
    try:
        pipeline = load_pipelines(settings.pipelines_path).get(args.pipeline)
    except NotFound as exc:
        return _fail(exc.detail, EXIT_USAGE)
    _adopt_daemon_environment(settings)
    status = asyncio.run(_run_once(pipeline, settings))
    return EXIT_OK if status is RunStatus.SUCCEEDED else EXIT_FAILED


def _adopt_daemon_environment(settings: Settings) -> None:
    # Steps get what they would get under the daemon: the settings as CRONMGR_* variables
    # (CRONMGR_STATE_DIR, ...) and never the API token, whatever this shell exported.
    from cronmgr.controller.launcher import settings_env

    for name in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        del os.environ[name]
    os.environ.update(settings_env(settings))


async def _run_once(pipeline: Pipeline, settings: Settings) -> RunStatus:
    from cronmgr.core.models import new_id, utcnow
    from cronmgr.runners.http.runner import HttpRunner
    from cronmgr.runners.pipeline.context import StepContext
    from cronmgr.runners.pipeline.run import run_pipeline, run_status

    context = StepContext(
        run_id=new_id(),
        pipeline=pipeline.name,
        scheduled_for=utcnow(),
        extra_env={"CRONMGR_STATE_DIR": str(settings.state_path)},  # as the daemon's runs
        work_root=None,  # a temporary work directory, removed when the run ends
    )
    print(f"pipeline {pipeline.name} (run {context.run_id})", flush=True)
    # As in the daemon: `${env:NAME}` may reference anything but the CRONMGR_* settings.
    environ = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    async with HttpRunner(environ=environ) as http:
        results = await run_pipeline(
            pipeline,
            context=context,
            kill_grace=settings.step_kill_grace_seconds,
            on_step_finished=_print_step,
            http=http,
        )
    status = run_status(pipeline, results)
    print(f"pipeline {pipeline.name} {status.value}", flush=True)
    return status


def _print_step(position: int, result: StepResult) -> None:
    print(format_step_result(position, result), flush=True)


def format_step_result(position: int, result: StepResult) -> str:
    """A finished step (or attempt) as `N. name  status  duration  [exit code, error]`."""
    parts = [f"{position + 1}. {result.step}", result.status.value]
    parts.append(f"{result.duration_ms / 1000:.2f} s")
    if result.attempt > 1:
        parts.append(f"attempt {result.attempt}")
    if result.exit_code is not None:
        parts.append(f"exit code {result.exit_code}")
    if result.signal is not None:
        parts.append(f"signal {result.signal}")
    if result.status_code is not None:
        parts.append(f"HTTP {result.status_code}")
    if result.error:
        parts.append(result.error)
    return "  " + "  ".join(parts)


# --- entry point -----------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "home": args.home,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
    }
    return load_settings(args.config, **overrides)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the command, turn expected failures into a message and exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
        code: int = args.func(args, settings)
    except ConfigError as exc:
        return _fail(exc.detail, EXIT_USAGE)
    except ControllerUnreachable as exc:
        return _fail(exc.detail, EXIT_UNREACHABLE)
    except CronmgrError as exc:
        return _fail(exc.detail, EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()
    return code


def _fail(detail: str, code: int) -> int:
    print(f"cronmgr: {detail}", file=sys.stderr)
    return code


def _reader_gone() -> int:
    # `cronmgr logs | head`: the reader left. Point stdout at /dev/null so that flushing
    # it at exit does not raise again, and end quietly.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cronmgr` console script."""
    sys.exit(run(argv))
