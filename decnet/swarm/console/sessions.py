"""Console sign-ins: a random session id in a cookie, mapped in memory to a token's name.

Sessions live in the master process only (a restart signs everyone out) and end after
`CONSOLE_SESSION_IDLE` seconds unused or `CONSOLE_SESSION_MAX_AGE` seconds in all. A
visitor of the sign-in page gets an anonymous session too, so the sign-in form carries a
CSRF token like every other form; signing in replaces it with a new id.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from decnet.ttp.constants import (
    CONSOLE_MAX_SESSIONS,
    CONSOLE_SESSION_IDLE,
    CONSOLE_SESSION_MAX_AGE,
)


@dataclass(slots=True)
class Session:
    """One browser's sign-in; `name` and `role` are None until a token was accepted."""

    csrf: str
    created: float
    seen: float
    name: str | None = None
    role: str | None = None
    id: str = field(default="", repr=False)

    @property
    def signed_in(self) -> bool:
        return self.name is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def csrf_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.csrf.encode())


class Sessions:
    """The sessions of one console, oldest use first (the first dropped when full)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_id)

    def new(self, name: str | None = None, role: str | None = None) -> Session:
        now = self._clock()
        session = Session(csrf=secrets.token_urlsafe(32), created=now, seen=now,
                          name=name, role=role, id=secrets.token_urlsafe(32))
        self._by_id[session.id] = session
        while len(self._by_id) > CONSOLE_MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of `session_id`, its last use moved to now; None otherwise."""
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.seen > CONSOLE_SESSION_IDLE or \
                now - session.created > CONSOLE_SESSION_MAX_AGE:
            del self._by_id[session_id]
            return None
        session.seen = now
        self._by_id.move_to_end(session_id)
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._by_id.pop(session_id, None)

    def end_all_of(self, name: str) -> None:
        """Sign out every session of the token `name` (it was revoked or expired)."""
        for key in [k for k, s in self._by_id.items() if s.name == name]:
            del self._by_id[key]
