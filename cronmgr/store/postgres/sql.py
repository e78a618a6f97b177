"""Named queries as asyncpg runs them: `:name` parameters become `$1..$n`, once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

# `:name`, not a `::type` cast, and not inside a quoted literal (matched first, kept).
_TOKEN = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([A-Za-z_]\w*)")


class Query(NamedTuple):
    """One named query: its text for the server and the parameters in `$n` order."""

    sql: str
    names: tuple[str, ...]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `params`; a bool goes as 0/1 (the columns that
        hold flags are integers, as in SQLite)."""
        return [_value(params[name]) for name in self.names]


def _value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def compile_query(text: str) -> Query:
    """`text` with its `:name` parameters numbered in order of first use."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Query(_TOKEN.sub(number, text), tuple(names))


def compile_queries(queries: Mapping[str, str]) -> dict[str, Query]:
    """Every named query compiled (migrations are run as scripts, without parameters)."""
    return {
        name: compile_query(text)
        for name, text in queries.items()
        if not name.startswith("migration_")
    }


def rows_changed(status: str) -> int:
    """The row count of a command tag such as 'UPDATE 3' or 'INSERT 0 1' (0 if none)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
