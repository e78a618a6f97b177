"""The run a step belongs to, and the callbacks a pipeline's caller hands in.

`StepContext` names the run (id, pipeline, moment, work directory) and `step_environment`
turns it into the `CRONMGR_*` variables of a step's environment, layered under the run's
extra variables and the step's own `env`. The callback types say what a caller of
`run_step` and `run_pipeline` is told, and how a target step finds its target.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cronmgr.core.models import StepResult, Target
from cronmgr.core.pipelines.steps import Step

StepCallback = Callable[[StepResult], None]
PipelineCallback = Callable[[int, StepResult], Awaitable[None] | None]
SpawnCallback = Callable[[int, float | None], Awaitable[None] | None]
"""Told (pgid, the leader's create time or None) when a command step's process started."""
TargetResolver = Callable[[str], Awaitable[Target]]


@dataclass(frozen=True, slots=True)
class StepContext:
    """The run a step belongs to, exported to it as `CRONMGR_*` variables.

    `work_root` is where `run_pipeline` creates the run's work directory; `work_dir` is
    that directory, set by `run_pipeline` for the steps it runs.
    """

    run_id: str
    pipeline: str
    scheduled_for: datetime
    extra_env: Mapping[str, str] = field(default_factory=dict)
    schedule_id: str | None = None
    work_root: Path | None = None
    work_dir: Path | None = None


def step_environment(
    step: Step, context: StepContext, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment `step` runs with: `base` (default: ours), context, extras, step env."""
    env = dict(os.environ if base is None else base)
    env["CRONMGR_RUN_ID"] = context.run_id
    env["CRONMGR_PIPELINE"] = context.pipeline
    env["CRONMGR_STEP"] = step.name
    env["CRONMGR_SCHEDULED_FOR"] = context.scheduled_for.isoformat()
    if context.work_dir is not None:
        env["CRONMGR_WORK_DIR"] = str(context.work_dir)
    env.update(context.extra_env)
    env.update(step.env)
    return env
