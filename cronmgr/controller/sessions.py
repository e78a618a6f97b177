"""Dashboard sessions: HMAC-signed cookies, and the CSRF tokens bound to them.

A browser cannot send the API's bearer token with a link or a form, so the dashboard
trades the token, once, for a session cookie. The cookie holds a random session id and
its expiry, signed with HMAC-SHA256 under a key that lives only in the controller's
memory: nothing about a session is written to disk, and a session survives nothing
more than it must. A controller restart (the way to change the token) ends every
session, so does the expiry, and logging out revokes the id at once.

The CSRF token of a session is an HMAC of its id under the same key: a page can carry
it in its forms without anything stored, and another site, which can neither read the
page nor the cookie, cannot compute it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_SECONDS = 8 * 3600.0
"""How long a session lasts after logging in, at most."""

_ID_BYTES = 18
_SESSION = b"session"
_CSRF = b"csrf"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in browser: its id, when it ends, and the CSRF token its forms carry."""

    id: str
    expires_at: float
    csrf_token: str


class SessionKeeper:
    """Issues, checks and revokes sessions under a key that never leaves this process."""

    def __init__(
        self, lifetime_seconds: float = SESSION_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._key = secrets.token_bytes(32)
        # Ids logged out before their expiry, kept only until then: a revoked cookie is
        # refused, and the set never outgrows the sessions of one lifetime.
        self._revoked: dict[str, float] = {}

    def issue(self) -> tuple[Session, str]:
        """A new session and the cookie value that carries it."""
        session_id = _b64(secrets.token_bytes(_ID_BYTES))
        expires = int(self._clock() + self.lifetime_seconds)
        payload = f"{session_id}.{expires}"
        return self._session(session_id, expires), f"{payload}.{self._sign(_SESSION, payload)}"

    def check(self, cookie: str | None) -> Session | None:
        """The session a cookie value carries; None when forged, expired or logged out."""
        if not cookie or cookie.count(".") != 2:
            return None
        session_id, expires_text, signature = cookie.split(".")
        payload = f"{session_id}.{expires_text}"
        if not hmac.compare_digest(signature, self._sign(_SESSION, payload)):
            return None
        expires = int(expires_text)  # signed, so it is the digits issue() wrote
        if expires <= self._clock() or session_id in self._revoked:
            return None
        return self._session(session_id, expires)

    def revoke(self, session: Session) -> None:
        """Log a session out: its cookie is refused from now on."""
        now = self._clock()
        self._revoked = {sid: until for sid, until in self._revoked.items() if until > now}
        self._revoked[session.id] = session.expires_at

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether `token` is the CSRF token of `session` (constant time)."""
        return bool(token) and hmac.compare_digest(str(token), session.csrf_token)

    def _session(self, session_id: str, expires: int) -> Session:
        return Session(session_id, float(expires), self._sign(_CSRF, session_id))

    def _sign(self, purpose: bytes, payload: str) -> str:
        # The purpose keeps the two uses apart: a CSRF token is never a valid signature.
        message = purpose + b"\x00" + payload.encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())


def tokens_match(expected: str, given: str | None) -> bool:
    """Whether a token typed into the login form is the API token (constant time)."""
    return bool(given) and hmac.compare_digest(str(given).strip().encode(), expected.encode())
