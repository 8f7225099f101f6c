"""OpenCanary's JSON log onto events.

Each line is one record: `logtype` (a code of OpenCanary's logger), `src_host`,
`src_port`, `dst_host`, `dst_port`, `node_id` (the sensor), `utc_time` / `local_time`
(`YYYY-mm-dd HH:MM:SS.ffffff`, no offset: read as UTC) and `logdata`, the service's own
fields (`USERNAME`, `PASSWORD`, `PATH`, `USERAGENT`, …).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from decnet.ttp.engine.events import Event, EventError
from decnet.ttp.inputs.base import Mapped, Skipped, number, source_id, text, timestamp

PREFIX: Final = "opencanary"

#: Login attempts: logtype -> service.
LOGINS: Final[dict[int, str]] = {
    2000: "ftp",
    3001: "http",
    4002: "ssh",
    6001: "telnet",
    7001: "httpproxy",
    8001: "mysql",
    9001: "mssql",
    9002: "mssql",
    12001: "vnc",
    14001: "rdp",
}
HTTP_GET: Final = 3000
#: Port scans seen by the host firewall: logtype -> scan type.
PORT_SCANS: Final[dict[int, str]] = {
    5001: "syn",
    5002: "nmap_os",
    5003: "nmap_null",
    5004: "nmap_xmas",
    5005: "nmap_fin",
}
SSH_VERSION: Final = 4001
#: Service start-up, pings and debug messages of OpenCanary itself: no event.
IGNORED: Final = frozenset({1000, 1001, 1002, 1003, 1004, 1005, 1006})


def _fields(logdata: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = text(logdata, key)
        if value is not None:
            return value
    return None


def map_record(record: Any, raw: bytes) -> Mapped:
    """The events of one decoded OpenCanary record (`raw`: its line, for the source id)."""
    if not isinstance(record, Mapping):
        raise EventError("an OpenCanary record must be a JSON object")
    logtype = number(record, "logtype")
    if logtype is None:
        raise EventError("not an OpenCanary record: no numeric logtype")
    if logtype in IGNORED:
        return []
    logdata = record.get("logdata")
    if not isinstance(logdata, Mapping):
        logdata = {}
    kind: str
    payload: dict[str, Any]
    if logtype in LOGINS:
        kind = "auth_attempt"
        payload = {"username": _fields(logdata, "USERNAME", "USER") or "",
                   "password": _fields(logdata, "PASSWORD"), "result": "failed",
                   "success": False, "service": LOGINS[logtype]}
        if logtype == 3001:
            payload["raw_url"] = _fields(logdata, "PATH")
            payload["user_agent"] = _fields(logdata, "USERAGENT")
    elif logtype == HTTP_GET:
        path = _fields(logdata, "PATH") or ""
        kind = "http_request"
        payload = {"method": "GET", "raw_url": path, "path": path.split("?", 1)[0],
                   "host": _fields(logdata, "HOSTNAME"),
                   "user_agent": _fields(logdata, "USERAGENT")}
    elif logtype in PORT_SCANS:
        kind = "portscan"
        payload = {"scan": PORT_SCANS[logtype], "protocol": _fields(logdata, "PROTO")}
    elif logtype == SSH_VERSION:
        kind = "ssh_client"
        payload = {"version": _fields(logdata, "REMOTEVERSION") or ""}
    else:
        return Skipped(f"logtype {logtype}")
    payload["logtype"] = logtype
    payload["dst_ip"] = text(record, "dst_host") or None
    payload["dst_port"] = number(record, "dst_port")
    payload["src_port"] = number(record, "src_port")
    when = record.get("utc_time")
    if when is None:
        when = record.get("local_time")
    return [Event(kind, source_id(PREFIX, raw), payload, None, None, None,
                  text(record, "src_host") or None, text(record, "node_id"),
                  timestamp(when))]
