"""A run's work directory: where it is, making it for a run, and removing old ones.

A run's directory is `<work_root>/<run_id>/` and outlives the run, until retention
removes it with `purge_work_dirs`; a run without a `work_root` gets a temporary directory
that goes when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Collection
from datetime import datetime
from pathlib import Path

from cronmgr.runners.pipeline.context import StepContext


def run_work_dir(work_root: Path, run_id: str) -> Path:
    """The work directory of run `run_id` under `work_root`."""
    if run_id in ("", ".", "..") or "/" in run_id or "\0" in run_id:
        raise ValueError(f"run id {run_id!r} cannot name a directory")
    return work_root / run_id


def purge_work_dirs(work_root: Path, older_than: datetime, keep: Collection[str] = ()) -> int:
    """Remove the run directories under `work_root` last changed before `older_than`.

    Directories named in `keep` (the ids of runs still going) stay. Blocking: call it in
    a thread. Returns how many were removed.
    """
    if not work_root.is_dir():
        return 0
    limit = older_than.timestamp()
    removed = 0
    for path in work_root.iterdir():
        if path.name in keep or not path.is_dir() or path.is_symlink():
            continue
        if path.stat().st_mtime < limit:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


@contextlib.asynccontextmanager
async def work_dir(context: StepContext) -> AsyncIterator[Path]:
    if context.work_root is not None:
        path = run_work_dir(context.work_root, context.run_id)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        yield path  # kept: the run's files are worth a look until retention takes them
        return
    path = Path(tempfile.mkdtemp(prefix="cronmgr-run-"))
    try:
        yield path
    finally:
        await asyncio.to_thread(shutil.rmtree, path, ignore_errors=True)
