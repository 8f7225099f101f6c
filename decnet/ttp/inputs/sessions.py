"""Cowrie's session protocol, carried from a session's connect to its logins."""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from decnet.ttp.constants import MAX_TRACKED_SESSIONS
from decnet.ttp.engine.events import Event

_PREFIX: Final = "cowrie:"


class SessionProtocols:
    """Which protocol (`ssh`, `telnet`) each open Cowrie session speaks.

    Fed every event in log order; remembers at most `capacity` open sessions (the
    least recently connected are forgotten first), so a flood of connections that never
    close costs a bounded amount.
    """

    def __init__(self, capacity: int = MAX_TRACKED_SESSIONS) -> None:
        self._capacity = capacity
        self._protocols: OrderedDict[str, str] = OrderedDict()
        self.forgotten = 0

    @staticmethod
    def needs(event: Event) -> bool:
        """`event` is a Cowrie login whose line did not name its protocol."""
        return (event.source_kind == "auth_attempt" and event.session_id is not None
                and event.payload.get("service") is None
                and event.source_id.startswith(_PREFIX))

    def observe(self, event: Event) -> Event:
        """Record a session's start or end; returns `event`, its service filled in when
        it is a login that `needs` one and its session is known."""
        kind = event.source_kind
        if kind != "session" and kind != "auth_attempt":
            return event
        session = event.session_id
        if session is None or not event.source_id.startswith(_PREFIX):
            return event
        if kind == "session":
            action = event.payload.get("action")
            protocol = event.payload.get("protocol")
            if action == "connect" and isinstance(protocol, str):
                self._protocols[session] = protocol
                self._protocols.move_to_end(session)
                if len(self._protocols) > self._capacity:
                    self._protocols.popitem(last=False)
                    self.forgotten += 1
            elif action == "closed":
                self._protocols.pop(session, None)
            return event
        if self.needs(event):
            protocol = self._protocols.get(session)
            if protocol is not None:
                return Event(kind, event.source_id, {**event.payload, "service": protocol},
                             event.attacker_uuid, session, event.decky_id, event.src_ip,
                             event.sensor, event.timestamp)
        return event
