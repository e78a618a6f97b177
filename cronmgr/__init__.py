"""cronmgr: an async process manager and pipeline daemon controller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cronmgr.core.version import __version__

__all__ = ["AsyncClient", "Client", "CronAPIClient", "__version__"]

if TYPE_CHECKING:
    from cronmgr.client import AsyncClient, Client, CronAPIClient


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `import cronmgr` (the daemon, the CLI) stays cheap.
    if name in ("Client", "AsyncClient", "CronAPIClient"):
        from cronmgr import client

        return getattr(client, name)
    raise AttributeError(f"module 'cronmgr' has no attribute {name!r}")
