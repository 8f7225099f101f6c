"""Cowrie's session protocol, carried from a session's connect to its logins."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from decnet.ttp.constants import MAX_TRACKED_SESSIONS
from decnet.ttp.engine.events import Event

_PREFIX: Final = "cowrie:"


def needs_service(event: Event) -> bool:
    """`event` is a Cowrie login whose line did not name its protocol."""
    return (event.source_kind == "auth_attempt" and event.session_id is not None
            and event.payload.get("service") is None
            and event.source_id.startswith(_PREFIX))


def session_update(event: Event) -> tuple[str, str | None] | None:
    """What a Cowrie session event says: (session, protocol) at a connect, (session,
    None) at a close; None for any other event."""
    if event.source_kind != "session" or event.session_id is None \
            or not event.source_id.startswith(_PREFIX):
        return None
    action = event.payload.get("action")
    if action == "connect":
        protocol = event.payload.get("protocol")
        return event.session_id, protocol if isinstance(protocol, str) else None
    return (event.session_id, None) if action == "closed" else None


def with_service(event: Event, service: str) -> Event:
    return Event(event.source_kind, event.source_id, {**event.payload, "service": service},
                 event.attacker_uuid, event.session_id, event.decky_id, event.src_ip,
                 event.sensor, event.timestamp)


class SessionProtocols:
    """Which protocol (`ssh`, `telnet`) each open Cowrie session speaks.

    Fed session events in log order; remembers at most `capacity` open sessions (the
    least recently connected are forgotten first), so a flood of connections that never
    close costs a bounded amount.
    """

    def __init__(self, capacity: int = MAX_TRACKED_SESSIONS) -> None:
        self._capacity = capacity
        self._protocols: OrderedDict[str, str] = OrderedDict()
        self.forgotten = 0

    needs = staticmethod(needs_service)

    def record(self, session: str, protocol: str | None) -> None:
        """A connect speaking `protocol` (None: a close, or a connect that names none)."""
        if protocol is None:
            self._protocols.pop(session, None)
            return
        self._protocols[session] = protocol
        self._protocols.move_to_end(session)
        if len(self._protocols) > self._capacity:
            self._protocols.popitem(last=False)
            self.forgotten += 1

    def complete(self, event: Event) -> Event:
        """`event` with its service filled in when it `needs` one and its session is known."""
        if needs_service(event):
            protocol = self._protocols.get(event.session_id or "")
            if protocol is not None:
                return with_service(event, protocol)
        return event

    def observe(self, event: Event) -> Event:
        """`record` a session event, `complete` any other; returns the event."""
        update = session_update(event)
        if update is not None:
            self.record(*update)
            return event
        return self.complete(event)
