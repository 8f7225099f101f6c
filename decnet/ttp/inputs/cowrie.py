"""Cowrie's JSON log (every version since 2018, and T-Pot's variant) onto events.

One line of `cowrie.json` is one record with an `eventid`. Records of the same session
share `session`, `src_ip` and `sensor`, which travel into every event. T-Pot renames
`dst_ip`/`dst_port` to `dest_ip`/`dest_port` and names the sensor `t-pot_hostname`.
Login records carry no protocol: the `service` of an `auth_attempt` is filled in from
the session's `cowrie.session.connect` by `SessionProtocols` when the line has none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from decnet.ttp.engine.events import Event, EventError
from decnet.ttp.inputs.base import Mapped, Skipped, number, seconds, source_id, text, timestamp
from decnet.ttp.inputs.tunnel import http_request, smtp_greeting, unwrap

PREFIX: Final = "cowrie"

#: Records that are well known and carry nothing to tag (terminal size, environment
#: variables, tty log files): mapped onto no event, not counted as unknown.
IGNORED: Final = frozenset({
    "cowrie.client.size", "cowrie.client.var", "cowrie.log.open", "cowrie.log.closed",
    "cowrie.session.params",
})

# Twisted's log prefix of older versions names the transport of the session.
_SYSTEM_PROTOCOL: Final = re.compile(r"(SSH|Telnet)Transport,")


def _string(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value if value is None or type(value) is str else text(record, key)


class _Line:
    """What every event of one record shares."""

    __slots__ = ("eventid", "raw", "record", "sensor", "session", "src_ip", "time")

    def __init__(self, record: Mapping[str, Any], raw: bytes, eventid: str) -> None:
        self.raw = raw
        self.record = record
        self.eventid = eventid
        self.session = _string(record, "session")
        self.src_ip = _string(record, "src_ip")
        self.sensor = _string(record, "sensor") or _string(record, "t-pot_hostname")
        when = record.get("timestamp")
        if when is None:
            when = record.get("@timestamp", record.get("time"))
        self.time = timestamp(when)

    def event(self, kind: str, payload: dict[str, Any], index: int = 0) -> Event:
        payload["eventid"] = self.eventid
        return Event(kind, source_id(PREFIX, self.raw, index), payload, None, self.session,
                     None, self.src_ip, self.sensor, self.time)


def protocol(record: Mapping[str, Any]) -> str | None:
    """`ssh` or `telnet` when the record says so (`protocol`, or the old `system`)."""
    value = record.get("protocol")
    if isinstance(value, str) and value:
        return value.lower()
    system = record.get("system")
    if isinstance(system, str):
        match = _SYSTEM_PROTOCOL.search(system[:200])
        if match is not None:
            return match[1].lower()
    return None


def _destination(record: Mapping[str, Any]) -> tuple[str | None, int | None]:
    host = text(record, "dst_ip") or text(record, "dest_ip")
    port = number(record, "dst_port")
    return host, port if port is not None else number(record, "dest_port")


def _command(line: _Line) -> Mapped:
    return [line.event("command", {"command_text": text(line.record, "input") or ""})]


def _command_result(line: _Line) -> Mapped:
    status = line.eventid.rsplit(".", 1)[1]
    return [line.event("command_result", {"command_text": text(line.record, "input") or "",
                                          "status": status})]


def _login(line: _Line) -> Mapped:
    record = line.record
    result = line.eventid.rsplit(".", 1)[1]
    payload: dict[str, Any] = {
        "username": text(record, "username") or "",
        "password": text(record, "password"),
        "result": result,
        "success": result == "success",
        "service": protocol(record),
    }
    fingerprint = text(record, "fingerprint")
    if fingerprint is not None:
        payload["key_fingerprint"] = fingerprint
        payload["key_type"] = text(record, "type")
    return [line.event("auth_attempt", payload)]


def _download(line: _Line) -> Mapped:
    record = line.record
    url = text(record, "url")
    failed = line.eventid.endswith(".failed")
    payload: dict[str, Any] = {
        "payload_text": url or "", "url": url, "direction": "download",
        "result": "failed" if failed else "success",
        "shasum": text(record, "shasum"), "outfile": text(record, "outfile"),
    }
    return [line.event("payload", payload)]


def _upload(line: _Line) -> Mapped:
    record = line.record
    filename = text(record, "filename")
    payload: dict[str, Any] = {
        "payload_text": filename or "", "filename": filename, "direction": "upload",
        "result": "success", "shasum": text(record, "shasum"),
        "outfile": text(record, "outfile"),
    }
    return [line.event("payload", payload)]


def _tunnel(line: _Line) -> Mapped:
    record = line.record
    host, port = _destination(record)
    payload: dict[str, Any] = {
        "dst_ip": host, "dst_port": port,
        "destination": f"{host}:{port}" if port is not None else host or "",
        "channel": "request" if line.eventid.endswith(".request") else "data",
    }
    data = text(record, "data")
    if data is None:
        return [line.event("tunnel", payload)]
    payload["data"] = data
    request = http_request(data)
    if request is not None:
        payload["app_protocol"] = "http"
        tunnel = line.event("tunnel", payload)
        path = request.raw_url
        return [tunnel, line.event("http_request", {
            "method": request.method, "raw_url": path, "path": path.split("?", 1)[0],
            "http_version": request.http_version, "host": request.host,
            "user_agent": request.user_agent, "dst_ip": host, "dst_port": port,
            "via": "direct-tcpip",
        }, 1)]
    greeting = smtp_greeting(data)
    if greeting is not None:
        payload["app_protocol"] = "smtp"
        payload["smtp_verb"] = greeting.verb
        payload["smtp_argument"] = greeting.argument
    return [line.event("tunnel", payload)]


def _client(line: _Line) -> Mapped:
    record = line.record
    payload: dict[str, Any]
    if line.eventid == "cowrie.client.version":
        version = text(record, "version")
        payload = {"version": unwrap(version) if version is not None else ""}
    elif line.eventid == "cowrie.client.kex":
        payload = {"hassh": text(record, "hassh"),
                   "hassh_algorithms": text(record, "hasshAlgorithms")}
    else:
        payload = {"username": text(record, "username"),
                   "key_fingerprint": text(record, "fingerprint"),
                   "key_type": text(record, "type")}
    return [line.event("ssh_client", payload)]


def _session(line: _Line) -> Mapped:
    record = line.record
    if line.eventid == "cowrie.session.connect":
        host, port = _destination(record)
        return [line.event("session", {
            "action": "connect", "protocol": protocol(record),
            "src_port": number(record, "src_port"), "dst_ip": host, "dst_port": port,
        })]
    duration = seconds(record.get("duration"))
    if duration is None:
        millis = seconds(record.get("duration_ms"))
        duration = millis / 1000 if millis is not None else None
    return [line.event("session", {"action": "closed", "duration": duration})]


_MAPPERS: Final[dict[str, Callable[[_Line], Mapped]]] = {
    "cowrie.command.input": _command,
    "cowrie.command.failed": _command_result,
    "cowrie.command.success": _command_result,
    "cowrie.login.failed": _login,
    "cowrie.login.success": _login,
    "cowrie.session.file_download": _download,
    "cowrie.session.file_download.failed": _download,
    "cowrie.session.file_upload": _upload,
    "cowrie.direct-tcpip.request": _tunnel,
    "cowrie.direct-tcpip.data": _tunnel,
    "cowrie.client.version": _client,
    "cowrie.client.kex": _client,
    "cowrie.client.fingerprint": _client,
    "cowrie.session.connect": _session,
    "cowrie.session.closed": _session,
}


def map_record(record: Any, raw: bytes) -> Mapped:
    """The events of one decoded Cowrie record (`raw`: its line, for the source ids)."""
    if not isinstance(record, Mapping):
        raise EventError("a Cowrie record must be a JSON object")
    eventid = record.get("eventid")
    if not isinstance(eventid, str) or not eventid:
        raise EventError("not a Cowrie record: no eventid")
    mapper = _MAPPERS.get(eventid)
    if mapper is None:
        return [] if eventid in IGNORED else Skipped(eventid[:100])
    return mapper(_Line(record, raw, eventid))
