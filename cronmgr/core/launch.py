"""The handshake between the controller and the daemon it launches.

The two never import each other: the controller starts `python -m cronmgr daemon` with a
`LaunchSpec` on its command line, the daemon answers on a pipe that starts with
`READY_PREFIX` or `ERROR_PREFIX`, and both read and write the small JSON files named
here in the state directory (what is wanted, what the daemon is doing, why it last
exited) and the PID file (`cronmgr.core.pidfile`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

READY_PREFIX = b"READY "
ERROR_PREFIX = b"ERROR "
DESIRED_FILENAME = "daemon.json"
EXIT_FILENAME = "daemon-exit.json"
STATE_FILENAME = "daemon-state.json"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What the daemon is asked to run: a pipeline every `interval_seconds`, besides the
    schedules; without a pipeline (None), the schedules only."""

    interval_seconds: int
    pipeline: str | None

    def argv(self, ready_fd: int) -> list[str]:
        """The daemon's command line."""
        argv = [
            sys.executable,
            "-m",
            "cronmgr",
            "daemon",
            "--ready-fd",
            str(ready_fd),
            "--interval",
            str(self.interval_seconds),
        ]
        return argv if self.pipeline is None else [*argv, "--pipeline", self.pipeline]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(orjson.dumps(data))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when missing or unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def spec_fields(spec: LaunchSpec) -> dict[str, Any]:
    """A spec as plain fields for logs and files."""
    return {"interval_seconds": spec.interval_seconds, "pipeline": spec.pipeline}
