"""The offline commands, which need no controller: `validate` loads the pipeline files
and lists their steps, schedules and next fire times; `run` runs one pipeline once in
this process, printing each step's outcome as it finishes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cronmgr.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _fail
from cronmgr.core.config import ENV_PREFIX, Settings
from cronmgr.core.errors import NotFound

if TYPE_CHECKING:
    from cronmgr.core.models import RunStatus, StepResult
    from cronmgr.core.pipelines.pipeline import Pipeline
    from cronmgr.core.pipelines.steps import CommandStep

FIRE_TIMES_SHOWN = 5

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
