"""Named SQL queries, read once from `cronmgr/sql/<dialect>.sql`."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def load_queries(dialect: str) -> dict[str, str]:
    """Every `-- name: x` block of the dialect's file, by name."""
    text = files("cronmgr").joinpath("sql", f"{dialect}.sql").read_text()
    pieces = _NAME.split(text)
    return {name: body.strip() for name, body in zip(pieces[1::2], pieces[2::2], strict=True)}


def migrations(queries: dict[str, str]) -> list[tuple[int, str]]:
    """The schema upgrades, in version order."""
    found = [
        (int(name.removeprefix("migration_")), sql)
        for name, sql in queries.items()
        if name.startswith("migration_")
    ]
    return sorted(found)
