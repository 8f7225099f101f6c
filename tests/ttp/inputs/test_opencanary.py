"""OpenCanary's JSON log onto events."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from decnet.ttp.engine.events import EventError
from decnet.ttp.inputs import Skipped, mapper
from tests.ttp.inputs.fixtures import events_of, lines

opencanary = mapper("opencanary")


def test_logtypes_map_onto_kinds() -> None:
    events = events_of("opencanary.json", "opencanary")
    assert [(e.source_kind, e.payload["logtype"]) for e in events] == [
        ("ssh_client", 4001), ("auth_attempt", 4002), ("auth_attempt", 6001),
        ("auth_attempt", 2000), ("http_request", 3000), ("auth_attempt", 3001),
        ("auth_attempt", 8001), ("portscan", 5001), ("portscan", 5004)]


def test_logins_name_their_service_and_credentials() -> None:
    logins = [e.payload for e in events_of("opencanary.json", "opencanary")
              if e.source_kind == "auth_attempt"]
    assert [(p["service"], p["username"], p["password"]) for p in logins] == [
        ("ssh", "pi", "raspberry"), ("telnet", "root", "xc3511"),
        ("ftp", "anonymous", "anonymous@"), ("http", "admin", "admin"),
        ("mysql", "root", "d41d8cd98f00b204e9800998ecf8427e")]


def test_addresses_sensor_and_utc_time() -> None:
    event = events_of("opencanary.json", "opencanary")[1]
    assert (event.src_ip, event.sensor) == ("203.0.113.45", "canary-lab-1")
    assert event.payload["dst_ip"] == "10.20.0.8" and event.payload["dst_port"] == 22
    assert event.timestamp == datetime(2023, 5, 4, 10, 15, 22, 901344, UTC).timestamp()


def test_http_requests_and_port_scans() -> None:
    events = events_of("opencanary.json", "opencanary")
    http = next(e.payload for e in events if e.source_kind == "http_request")
    assert (http["raw_url"], http["host"], http["user_agent"]) == (
        "/index.html", "10.20.0.8", "Mozilla/5.0 zgrab/0.x")
    scans = [e.payload for e in events if e.source_kind == "portscan"]
    assert [(s["scan"], s["dst_port"]) for s in scans] == [("syn", 8080), ("nmap_xmas", 445)]


def test_boot_messages_are_silent_and_other_logtypes_counted() -> None:
    results = [opencanary(orjson.loads(line), line) for line in lines("opencanary.json")]
    assert results[0] == []
    assert results[-1] == Skipped("logtype 17001")


@pytest.mark.parametrize("record", [{"logtype": "x"}, {}, [1],
                                    {"logtype": 4002, "utc_time": "not a time"}])
def test_malformed_records_raise_event_error(record: object) -> None:
    with pytest.raises(EventError):
        opencanary(record, orjson.dumps(record))
