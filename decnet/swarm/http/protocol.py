"""uvicorn's HTTP/1.1 protocol (h11) with the limits a server facing attackers needs.

- A connection has `header_timeout` seconds to send a request's line and headers
  (counted from its first byte, or from the connect), `body_timeout` seconds for the
  body, `keep_alive_timeout` seconds of silence between requests.
- A response the client stops reading is dropped after `write_timeout` seconds of the
  transport's buffer staying full.
- At most `max_connections` are open: one more evicts the connection that has been
  waiting longest for a request (idle, or still sending headers); when every connection
  is inside a request, the new one is closed at once.

Nothing here logs per connection: every closing is counted (`ConnectionGuard.closed`,
exposed on `/metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from decnet.swarm.http.limits import HttpLimits


class ConnectionGuard:
    """What the connections of one server share: the limits, the idle ones, the counts."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        #: connections waiting for a request, oldest first (a dict keeps insertion order)
        self.idle: dict[GuardedH11Protocol, None] = {}
        self.open = 0
        self.closed: Counter[str] = Counter()

    def protocol_class(self) -> type[GuardedH11Protocol]:
        """The protocol class to give `uvicorn.Config(http=...)`."""
        return type("BoundGuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})

    def make_room(self) -> bool:
        """Close the longest-waiting idle connection; False when there is none."""
        for victim in self.idle:
            victim.drop("evicted")
            return True
        return False


def _no_delay(transport: asyncio.Transport) -> None:
    """Send each write at once (asyncio skips it on sockets made with protocol 0, as
    `socket.create_server` makes them): without it a response's body waits for the
    client's delayed ACK of its headers, 40 ms on Linux."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GuardedH11Protocol(H11Protocol):
    """`H11Protocol` with read, write and idle timeouts and a connection cap."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.guard.limits.keep_alive_timeout  # type: ignore[assignment]
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_phase: str | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._counted = False

    # connection life -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        guard = self.guard
        if guard.open >= guard.limits.max_connections and not guard.make_room():
            guard.closed["refused"] += 1
            transport.abort()
            return
        super().connection_made(transport)
        _no_delay(transport)
        self._counted = True
        guard.open += 1
        guard.idle[self] = None
        self._arm_read("headers", guard.limits.header_timeout, "header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._counted:
            return
        self._counted = False
        self.guard.open -= 1
        self.guard.idle.pop(self, None)
        self._cancel_read()
        self._cancel_write()
        super().connection_lost(exc)

    def drop(self, reason: str) -> None:
        """Close this connection now (buffered output discarded) and count why."""
        if not self._counted or self.transport.is_closing():
            return
        self.guard.closed[reason] += 1
        self.guard.idle.pop(self, None)
        self._cancel_read()
        self._cancel_write()
        self.transport.abort()

    # reading ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        started = self._read_phase is None and self.conn.their_state is h11.IDLE
        if started:  # the first byte of a request on a kept-alive connection
            self._arm_read("headers", self.guard.limits.header_timeout, "header_timeout")
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._cancel_read()  # uvicorn's keep-alive timer runs until the next byte
            self.guard.idle[self] = None
        self._follow()

    def _follow(self) -> None:
        """Move the read deadline along with the request the client is sending."""
        if not self._counted or self.transport.is_closing():
            return
        theirs = self.conn.their_state
        if theirs is h11.IDLE:
            return
        self.guard.idle.pop(self, None)
        if theirs is h11.SEND_BODY:
            if self._read_phase != "body":
                self._arm_read("body", self.guard.limits.body_timeout, "body_timeout")
        else:  # the request is in: the application answers in its own time
            self._cancel_read()

    def _arm_read(self, phase: str, seconds: float, reason: str) -> None:
        self._cancel_read()
        self._read_phase = phase
        self._read_timer = self.loop.call_later(seconds, self.drop, reason)

    def _cancel_read(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._read_phase = None

    # writing ---------------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(
                self.guard.limits.write_timeout, self.drop, "write_timeout")

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write()

    def _cancel_write(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
