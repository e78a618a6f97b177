"""A pipeline's steps: a command (an argv or a shell string), an inline HTTP request or a
named target, with the timeout, retries and order of each.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cronmgr.core.models import RetryPolicy, Target
from cronmgr.core.secret_refs import redact
from cronmgr.core.specs.targets import TargetSpec

DEFAULT_TIMEOUT_SECONDS = 3600.0
DEFAULT_RETRY_BACKOFF_SECONDS = 1.0
#: The longest wait between two attempts of a step (unless the base itself is longer).
RETRY_BACKOFF_MAX_SECONDS = 300.0
SHELL = "/bin/sh"


class StepKind(StrEnum):
    """What a step does: run a command (argv or shell), send a request, or call a target."""

    COMMAND = "command"
    HTTP = "http"
    TARGET = "target"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One step of a pipeline: exactly one of argv, shell, http (a request) or target.

    `needs` is None when the step did not declare any (then the file's order decides);
    `cwd` and `env` only matter to command steps.
    """

    name: str
    cwd: Path
    argv: tuple[str, ...] | None = None
    shell: str | None = None
    http: Target | None = None
    target: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    retries: int = 0
    retry_backoff_seconds: float = DEFAULT_RETRY_BACKOFF_SECONDS
    continue_on_error: bool = False
    needs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        actions = (self.argv, self.shell, self.http, self.target)
        if sum(action is not None for action in actions) != 1:
            raise ValueError(f"step {self.name!r}: give exactly one of argv, shell, http or target")

    @property
    def kind(self) -> StepKind:
        """command (argv or shell), http (an inline request) or target (a named one)."""
        if self.http is not None:
            return StepKind.HTTP
        if self.target is not None:
            return StepKind.TARGET
        return StepKind.COMMAND

    @property
    def retry(self) -> RetryPolicy:
        """How failed attempts are retried: `retries` more, exponential backoff, capped."""
        return retry_policy(self.retries, self.retry_backoff_seconds)

    @property
    def exec_args(self) -> tuple[str, ...]:
        """The argument vector to execute, the shell included for shell steps."""
        if self.argv is not None:
            return self.argv
        if self.shell is not None:
            return (SHELL, "-c", self.shell)
        raise ValueError(f"step {self.name!r} is a {self.kind} step, not a command")

    @property
    def command_line(self) -> str:
        """What the step does as a person would write it, for logs and listings."""
        if self.argv is not None:
            return shlex.join(self.argv)
        if self.http is not None:
            return f"{self.http.method} {redact(self.http.url)}"
        if self.target is not None:
            return f"target {self.target!r}"
        return self.shell or ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping; an inline request's secrets are redacted."""
        return {
            "name": self.name,
            "type": self.kind.value,
            "argv": list(self.argv) if self.argv is not None else None,
            "shell": self.shell,
            "http": _request_dict(self.http) if self.http is not None else None,
            "target": self.target,
            "cwd": str(self.cwd),
            "env": dict(self.env),
            "timeout_seconds": self.timeout_seconds,
            "retries": self.retries,
            "retry_backoff_seconds": self.retry_backoff_seconds,
            "continue_on_error": self.continue_on_error,
            "needs": list(self.needs) if self.needs is not None else None,
        }


#: The name the runner and the CLI knew steps by when every step was a command.
CommandStep = Step


def retry_policy(retries: int, backoff_seconds: float) -> RetryPolicy:
    """The policy of a step with `retries` and `retry_backoff_seconds`."""
    return RetryPolicy(
        max_attempts=retries + 1,
        backoff_base_seconds=backoff_seconds,
        backoff_max_seconds=max(backoff_seconds, RETRY_BACKOFF_MAX_SECONDS),
    )


def _request_dict(target: Target) -> dict[str, Any]:
    shown = TargetSpec.fields_of(target)
    for name in ("name", "retry"):
        shown.pop(name)
    return {**shown, "url": redact(target.url), "headers": redact(target.headers)}
