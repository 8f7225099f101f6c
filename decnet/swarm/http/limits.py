"""What one client may cost the worker: sizes, counts and timeouts, in one value."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass, replace

from decnet.ttp.constants import (
    ACCEPT_BACKLOG,
    BODY_TIMEOUT,
    FD_RESERVE,
    HEADER_TIMEOUT,
    KEEP_ALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_EVENT_BODY_BYTES,
    MAX_EVENT_ERROR_CHARS,
    MAX_EVENTS_PER_REQUEST,
    MAX_PENDING_REQUESTS,
    MAX_RESPONSE_BYTES,
    MAX_RESPONSE_TAGS,
    WRITE_TIMEOUT,
)
from decnet.ttp.errors import ConfigError, ListenError

log = logging.getLogger(__name__)

#: Bytes of one per-event error entry at most: `{"index":N,"error":"…"}` with a message
#: of at most MAX_EVENT_ERROR_CHARS characters, each at most 6 bytes once JSON-escaped.
ERROR_ENTRY_BYTES = 40 + 6 * MAX_EVENT_ERROR_CHARS
#: Bytes of the envelope of a 207 response around its tags and errors.
ENVELOPE_BYTES = 128


def connection_room(file_limit: int) -> int:
    """Connections a process with `file_limit` open files may hold: the limit less a
    reserve for everything else, less two accept bursts (see ACCEPT_BACKLOG)."""
    return file_limit - FD_RESERVE - 2 * ACCEPT_BACKLOG


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The worker's bounds per request, per connection and in total (see README)."""

    max_body_bytes: int = MAX_EVENT_BODY_BYTES
    max_events: int = MAX_EVENTS_PER_REQUEST
    max_response_bytes: int = MAX_RESPONSE_BYTES
    max_response_tags: int = MAX_RESPONSE_TAGS
    max_pending: int = MAX_PENDING_REQUESTS
    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_events", "max_response_bytes",
                     "max_response_tags", "max_pending", "max_connections"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout", "write_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be more than 0 seconds")

    def response_bound(self, events: int) -> int:
        """Largest `POST /events` response body, bytes, for a request of `events` events."""
        return self.max_response_bytes + ENVELOPE_BYTES + ERROR_ENTRY_BYTES * events

    def within_fd_limit(self) -> HttpLimits:
        """These limits with `max_connections` below the soft file limit (less a reserve).

        The soft limit is first raised towards the hard one as far as `max_connections`
        needs (1,024, a common soft limit, is less than the default needs).
        """
        soft = _raise_file_limit(self.max_connections + FD_RESERVE + 2 * ACCEPT_BACKLOG)
        if soft == resource.RLIM_INFINITY:
            return self
        room = connection_room(soft)
        if room < 8:
            raise ListenError(f"the open-file limit ({soft}) leaves no room for HTTP "
                              f"connections; raise it (ulimit -n) above "
                              f"{soft - room + 8}")
        if room >= self.max_connections:
            return self
        log.warning("open-file limit %d: at most %d connections (of %d asked)",
                    soft, room, self.max_connections)
        return replace(self, max_connections=room)


def _raise_file_limit(wanted: int) -> int:
    """Raise the soft open-file limit to `wanted` (at most the hard limit); the soft
    limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft
