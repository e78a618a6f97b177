"""The API token: configured, or generated once into the state directory (mode 0600)."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets

import structlog

from cronmgr.core.config import Settings
from cronmgr.core.locate import read_token as read_token

log = structlog.get_logger("cronmgr.auth")


def ensure_token(settings: Settings) -> str | None:
    """The token the controller demands; generated on first use. None when auth is off."""
    if not settings.auth:
        return None
    if settings.api_token:
        return settings.api_token
    path = settings.token_file
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new_token() + "\n")
        log.info("api_token_generated", path=str(path))
    _check_private(settings)
    token = read_token(settings)
    assert token is not None
    return token


def new_token() -> str:
    """A fresh API token: 43 URL-safe characters, never starting with "-", which a
    command line would take for an option (`cronmgr status --token -x…`)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def token_matches(expected: str, header: str | None) -> bool:
    """Whether an Authorization header carries the expected bearer token (constant time)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _check_private(settings: Settings) -> None:
    mode = settings.token_file.stat().st_mode & 0o777
    if mode & 0o077:
        # Someone loosened it; put it back rather than serve a token others can read.
        settings.token_file.chmod(0o600)
        log.warning("api_token_permissions_fixed", path=str(settings.token_file), was=oct(mode))
