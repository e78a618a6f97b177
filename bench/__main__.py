"""Run every `bench/bench_*.py` module and print their rows as one aligned table.

Each module's `run()` returns rows with the keys name, value, unit, target and ok, and
optionally `peer`: a rival's figure for the same measurement, shown beside `value` in a
column that appears only when some row has one.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

import bench

COLUMNS = ("name", "value", "unit", "target", "ok")
NUMBER_COLUMNS = ("value", "peer")


def main() -> int:
    """Run the benchmarks and print the table; the exit code is 0 (nothing here gates CI)."""
    rows: list[dict[str, Any]] = []
    for module in bench_modules():
        rows += module.run()
    print(format_table(rows))
    return 0


def bench_modules() -> list[ModuleType]:
    """The `bench_*` modules of this package, by name."""
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    return [importlib.import_module(f"bench.{name}") for name in names]


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as text columns: a header, a rule, one line per row, values right-aligned."""
    columns = _columns(rows)
    cells = [columns, *(tuple(_cell(row.get(column, "")) for column in columns) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    rule = tuple("-" * width for width in widths)
    right = [column in NUMBER_COLUMNS for column in columns]
    return "\n".join(_line(line, widths, right) for line in [cells[0], rule, *cells[1:]])


def _columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    # The peer's figure goes right after ours, and only when there is one.
    if any("peer" in row for row in rows):
        return (*COLUMNS[:2], "peer", *COLUMNS[2:])
    return COLUMNS


def _line(cells: tuple[str, ...], widths: list[int], right: list[bool]) -> str:
    # Numbers line up on the right, words on the left.
    padded = [
        cell.rjust(width) if numeric else cell.ljust(width)
        for cell, width, numeric in zip(cells, widths, right, strict=True)
    ]
    return "  ".join(padded).rstrip()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


if __name__ == "__main__":
    raise SystemExit(main())
