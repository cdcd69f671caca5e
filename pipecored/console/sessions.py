"""Console sessions: an opaque random id in a cookie, the session itself held in this process's
memory. A restart (or another node of a cluster) knows no session: the user logs in again.

A session keeps the SHA-256 of the key it logged in with, never the key, and looks that digest
up in the live configuration on every request: a key removed from the configuration (rotated,
a tenant deleted) ends its sessions at once. Each session has its own CSRF token, sent back in
a hidden field of every form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from pipecored.access import Principal
from pipecored.config.registry import ADMIN, ConfigSnapshot

COOKIE: Final = "pipecored_console"
IDLE_SECONDS: Final = 8 * 3600  # no request for this long: logged out
MAX_AGE_SECONDS: Final = 24 * 3600  # logged out this long after logging in, in any case
MAX_SESSIONS: Final = 10_000  # logins cannot grow memory without bound: the oldest goes


@dataclass(slots=True)
class Session:
    key_digest: bytes
    csrf: str
    created: float
    seen: float
    key_id: str = field(default="")

    def principal(self, snapshot: ConfigSnapshot) -> Principal | None:
        """Who the session acts as now, or None when its key is no longer configured."""
        who = snapshot.keys.get(self.key_digest)
        if who is None:
            return None
        return Principal(None if who == ADMIN else who, key_id=self.key_id)

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


def _index(session_id: str) -> bytes:
    # held by the id's digest: a dump of this process's memory holds no usable cookie
    return hashlib.sha256(session_id.encode()).digest()


class Sessions:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._sessions: dict[bytes, Session] = {}
        self.clock = clock

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, key_digest: bytes) -> tuple[str, Session]:
        """A new session for a key that authenticated; returns its cookie value too."""
        now = self.clock()
        if len(self._sessions) >= MAX_SESSIONS:
            self._expire(now)
            while len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions, key=lambda k: self._sessions[k].created)
                del self._sessions[oldest]
        session_id = secrets.token_urlsafe(32)
        session = Session(
            key_digest=key_digest,
            csrf=secrets.token_urlsafe(32),
            created=now,
            seen=now,
            key_id=key_digest.hex()[:8],
        )
        self._sessions[_index(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        index = _index(session_id)
        session = self._sessions.get(index)
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > IDLE_SECONDS or now - session.created > MAX_AGE_SECONDS:
            del self._sessions[index]
            return None
        session.seen = now
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(_index(session_id), None)

    def _expire(self, now: float) -> None:
        for index, s in list(self._sessions.items()):
            if now - s.seen > IDLE_SECONDS or now - s.created > MAX_AGE_SECONDS:
                del self._sessions[index]
