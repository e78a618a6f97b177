"""One step of the demo pipeline: extract, transform or load a few numbers.

Each step prints its progress and hands its result to the next through a small JSON file
in $CRONMGR_STATE_DIR/demo/ (a temporary directory when the variable is unset), so a run
leaves something to look at without touching anything else. Standard library only.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

STEPS = ("extract", "transform", "load")


def work_dir() -> Path:
    """Where the demo keeps its files, created on first use."""
    base = os.environ.get("CRONMGR_STATE_DIR") or Path(tempfile.gettempdir()) / "cronmgr"
    path = Path(base) / "demo"
    path.mkdir(parents=True, exist_ok=True)
    return path


def say(step: str, message: str) -> None:
    """Print one progress line, flushed at once so it reaches the log as it happens."""
    print(f"[{STEPS.index(step) + 1}/{len(STEPS)}] {step}: {message}", flush=True)


def write_json(path: Path, data: object) -> None:
    """Write atomically, so a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def extract(directory: Path) -> None:
    """Produce a few numbers, as if fetched from somewhere."""
    numbers = [random.randint(1, 100) for _ in range(10)]
    write_json(directory / "extracted.json", {"numbers": numbers})
    say("extract", f"fetched {len(numbers)} numbers")


def transform(directory: Path) -> None:
    """Square the extracted numbers."""
    numbers = json.loads((directory / "extracted.json").read_text(encoding="utf-8"))["numbers"]
    squares = [n * n for n in numbers]
    write_json(directory / "transformed.json", {"squares": squares})
    say("transform", f"squared {len(squares)} numbers")


def load(directory: Path) -> None:
    """Write a one-line summary of the run."""
    data = json.loads((directory / "transformed.json").read_text(encoding="utf-8"))
    squares = data["squares"]
    summary = {
        "run_id": os.environ.get("CRONMGR_RUN_ID"),
        "scheduled_for": os.environ.get("CRONMGR_SCHEDULED_FOR"),
        "finished_at": datetime.now(UTC).isoformat(),
        "count": len(squares),
        "total": sum(squares),
    }
    write_json(directory / "report.json", summary)
    say("load", f"total {summary['total']} written to {directory / 'report.json'}")


def main(argv: list[str]) -> int:
    """Run the step named by the first argument."""
    actions = {"extract": extract, "transform": transform, "load": load}
    if len(argv) != 1 or argv[0] not in actions:
        print(f"usage: demo_step.py {{{'|'.join(STEPS)}}}", file=sys.stderr)
        return 2
    directory = work_dir()
    say(argv[0], f"starting (state in {directory})")
    actions[argv[0]](directory)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
