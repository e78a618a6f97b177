"""`tail_lines(path, 100)` on a 1 GB JSON-lines log, against a 10 MB one.

The controller tails the daemon's log on every dashboard refresh, so the cost must follow
the number of lines asked for, not the size of the file. Each size is measured warm (pages
in the page cache) and cold-ish (the file's cached pages dropped with posix_fadvise before
every call; the disk or the host's cache then serves the read).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from cronmgr.observability.logs import tail_lines

MB = 1000 * 1000
SIZES = (("10 MB", 10 * MB), ("1 GB", 1000 * MB))
CHUNK_BYTES = 8 * 1024 * 1024
LINES = 100
RUNS = 50
TARGET_MS = 10.0


def run() -> list[dict[str, Any]]:
    """Build both logs in a temporary directory, time the tails, delete the logs."""
    rows: list[dict[str, Any]] = []
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cronmgr-bench-") as tmp:
        paths = {label: Path(tmp) / f"{size}.log" for label, size in SIZES}
        for label, size in SIZES:
            write_log(paths[label], size)
        for mode in ("warm", "cold"):
            for label, samples in time_tails(paths, cold=mode == "cold").items():
                rows += timing_rows(f"tail {LINES} lines, {label}, {mode}", samples)
                medians[f"{label} {mode}"] = statistics.median(samples)
    rows.append(ratio_row(medians["1 GB warm"], medians["10 MB warm"]))
    return rows


def write_log(path: Path, size: int) -> None:
    """A log of `size` bytes of realistic event lines, written in big chunks and synced."""
    chunk = sample_chunk()
    with path.open("wb") as fh:
        for _ in range(size // len(chunk)):
            fh.write(chunk)
        fh.write(chunk[: size % len(chunk)].rpartition(b"\n")[0] + b"\n")
        fh.flush()
        # Only clean pages can be dropped from the cache for the cold runs.
        os.fdatasync(fh.fileno())


def sample_chunk() -> bytes:
    """About CHUNK_BYTES of whole JSON lines, as the daemon writes them."""
    lines = []
    total = n = 0
    while total < CHUNK_BYTES:
        event = {
            "run_id": "0193a5c2-7f1e-7c3a-9b2d-5e8f1a2b3c4d",
            "pipeline": "default",
            "step": "extract",
            "line": f"processed record {n} of batch {n // 1000}: " + "ok " * (n % 40),
            "n": n,
            "event": "step_output",
            "level": "info",
            "timestamp": "2026-01-01T12:00:00.123456Z",
            "pid": 4242,
        }
        line = orjson.dumps(event) + b"\n"
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)


def time_tails(paths: dict[str, Path], *, cold: bool) -> dict[str, list[float]]:
    """Milliseconds per call for each file, the files taking turns so noise hits both."""
    samples: dict[str, list[float]] = {label: [] for label in paths}
    for path in paths.values():
        tail_lines(path, LINES)
    for _ in range(RUNS):
        for label, path in paths.items():
            if cold:
                drop_cached_pages(path)
            samples[label].append(timed_tail(path))
    return samples


def drop_cached_pages(path: Path) -> None:
    """Evict the file from the page cache, so the next read goes to the disk (or host)."""
    with path.open("rb") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def timed_tail(path: Path) -> float:
    start = time.perf_counter()
    lines = tail_lines(path, LINES)
    elapsed = (time.perf_counter() - start) * 1000
    if len(lines) != LINES:
        raise AssertionError(f"tail_lines returned {len(lines)} lines, not {LINES}")
    return elapsed


def timing_rows(name: str, samples: list[float]) -> list[dict[str, Any]]:
    """Median and 95th percentile rows, each held against the target."""
    p95 = statistics.quantiles(samples, n=20)[-1]
    return [
        _row(f"{name}, median", statistics.median(samples)),
        _row(f"{name}, p95", p95),
    ]


def ratio_row(big: float, small: float) -> dict[str, Any]:
    """The size independence in one number: warm median on 1 GB over that on 10 MB."""
    ratio = big / small
    return {
        "name": "tail cost, 1 GB / 10 MB (warm median)",
        "value": ratio,
        "unit": "x",
        "target": "< 2",
        "ok": ratio < 2,
    }


def _row(name: str, milliseconds: float) -> dict[str, Any]:
    return {
        "name": name,
        "value": milliseconds,
        "unit": "ms",
        "target": f"< {TARGET_MS:g} ms",
        "ok": milliseconds < TARGET_MS,
    }
