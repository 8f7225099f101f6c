"""Cowrie's JSON log of several versions (2018, 2021, 2025, T-Pot) onto events."""

from __future__ import annotations

import orjson
import pytest

from decnet.ttp.engine.events import EventError
from decnet.ttp.inputs import SessionProtocols, Skipped, mapper
from tests.ttp.inputs.fixtures import events_of, lines

cowrie = mapper("cowrie")


def kinds(name: str) -> list[str]:
    return [event.source_kind for event in events_of(name, "cowrie")]


def test_a_2018_session_maps_onto_events_in_order() -> None:
    assert kinds("cowrie-2018.json") == [
        "session", "ssh_client", "auth_attempt", "auth_attempt", "command", "command_result",
        "command", "payload", "command_result", "session",  # log.closed: no event
        "session", "auth_attempt", "session"]


def test_every_event_carries_address_session_sensor_and_time() -> None:
    for name in ("cowrie-2018.json", "cowrie-2021.json", "cowrie-2025.json",
                 "tpot-cowrie.json"):
        for event in events_of(name, "cowrie"):
            assert event.src_ip and event.session_id and event.sensor, (name, event)
            assert event.timestamp is not None and event.timestamp > 1.5e9


def test_logins_are_auth_attempts_with_their_result_and_protocol() -> None:
    events = [e for e in events_of("cowrie-2018.json", "cowrie")
              if e.source_kind == "auth_attempt"]
    assert [(e.payload["username"], e.payload["password"], e.payload["result"],
             e.payload["success"], e.payload["service"]) for e in events] == [
        ("admin", "admin", "failed", False, "ssh"),
        ("root", "123456", "success", True, "ssh"),
        ("guest", "12345", "failed", False, "telnet"),  # from the old `system` prefix
    ]


def test_the_protocol_of_a_login_comes_from_its_session_connect() -> None:
    events = events_of("cowrie-2025.json", "cowrie")
    logins = [e for e in events if e.source_kind == "auth_attempt"]
    assert {e.payload["service"] for e in logins} == {None}  # the lines do not say
    sessions = SessionProtocols()
    completed = [sessions.observe(e) for e in events]
    assert [e.payload["service"] for e in completed if e.source_kind == "auth_attempt"] == [
        "telnet", "telnet", "ssh"]


def test_session_protocols_are_bounded() -> None:
    sessions = SessionProtocols(capacity=2)
    for n in range(5):
        line = orjson.dumps({"eventid": "cowrie.session.connect", "session": f"s{n}",
                             "protocol": "ssh", "src_ip": "192.0.2.1"})
        mapped = cowrie(orjson.loads(line), line)
        assert not isinstance(mapped, Skipped)
        sessions.observe(mapped[0])
    assert sessions.forgotten == 3


def test_commands_downloads_and_uploads() -> None:
    events = events_of("cowrie-2021.json", "cowrie")
    commands = [e.payload["command_text"] for e in events if e.source_kind == "command"]
    assert commands == ["cat /proc/cpuinfo | grep name | wc -l", "ps | grep '[Mm]iner'",
                        "unset HISTFILE; rm -f /var/log/wtmp"]
    payloads = [e.payload for e in events if e.source_kind == "payload"]
    assert [(p["direction"], p["result"], p["payload_text"]) for p in payloads] == [
        ("upload", "success", "x86_64.bin"),
        ("download", "failed", "http://198.51.100.200/mips")]
    assert payloads[0]["shasum"].startswith("1f3e5a7c")
    download = next(e for e in events_of("cowrie-2018.json", "cowrie")
                    if e.source_kind == "payload")
    assert download.payload["url"] == "http://203.0.113.77/bins.sh"
    assert download.payload["outfile"].startswith("dl/7c5e")


def test_a_tunnelled_http_request_is_parsed() -> None:
    events = events_of("cowrie-2021.json", "cowrie")
    http = [e for e in events if e.source_kind == "http_request"]
    assert len(http) == 1
    assert {k: http[0].payload[k] for k in ("method", "raw_url", "path", "host",
                                             "user_agent", "dst_port")} == {
        "method": "GET", "raw_url": "/json/", "path": "/json/", "host": "ip-who.com",
        "user_agent": "Go-http-client/1.1", "dst_port": 80}
    tunnels = [e.payload for e in events if e.source_kind == "tunnel"]
    assert [(t["destination"], t["channel"], t.get("app_protocol")) for t in tunnels] == [
        ("ip-who.com:80", "request", None), ("ip-who.com:80", "data", "http"),
        ("smtp.mail.example.net:25", "request", None),
        ("smtp.mail.example.net:25", "data", "smtp")]
    assert (tunnels[3]["smtp_verb"], tunnels[3]["smtp_argument"]) == (
        "EHLO", "mail.example.org")
    # one line, two events: distinct, deterministic source ids
    tunnel = next(e for e in events if e.payload.get("app_protocol") == "http")
    assert http[0].source_id == tunnel.source_id + "/1"


def test_client_fingerprints() -> None:
    events = [e.payload for e in events_of("cowrie-2021.json", "cowrie")
              if e.source_kind == "ssh_client"]
    assert events[0]["version"] == "SSH-2.0-Go"
    assert events[1]["hassh"] == "4e066189c3bbeec38c99b1855113733a"
    old = next(e for e in events_of("cowrie-2018.json", "cowrie")
               if e.source_kind == "ssh_client")
    assert old.payload["version"] == "SSH-2.0-libssh2_1.4.3"  # quotes of repr() removed
    key = [e.payload for e in events_of("cowrie-2025.json", "cowrie")
           if e.source_kind == "ssh_client"][1]
    assert key["key_fingerprint"].startswith("a4:1b") and key["key_type"] == "ssh-rsa"


def test_session_boundaries_and_durations() -> None:
    durations = [e.payload["duration"] for name in ("cowrie-2018.json", "cowrie-2025.json")
                 for e in events_of(name, "cowrie")
                 if e.source_kind == "session" and e.payload["action"] == "closed"]
    assert durations == [4.58, 2.7, 6.021, 0.9]  # seconds, duration_ms, numeric text


def test_tpot_renames() -> None:
    events = events_of("tpot-cowrie.json", "cowrie")
    assert {e.sensor for e in events} == {"1f2e3d4c5b6a", "tpot-fra"}
    connect = events[0]
    assert (connect.payload["dst_ip"], connect.payload["dst_port"]) == ("10.10.0.4", 22)
    tunnel = next(e for e in events if e.source_kind == "tunnel")
    assert tunnel.payload["destination"] == "142.250.0.100:443"


def test_unknown_event_ids_are_skipped_and_known_noise_is_silent() -> None:
    results = [cowrie(orjson.loads(line), line) for line in lines("cowrie-2025.json")]
    assert Skipped("cowrie.telnet.option") in results
    size = next(line for line in lines("cowrie-2021.json") if b"cowrie.client.size" in line)
    assert cowrie(orjson.loads(size), size) == []


def test_source_ids_are_deterministic_and_distinct() -> None:
    first = [e.source_id for e in events_of("cowrie-2021.json", "cowrie")]
    again = [e.source_id for e in events_of("cowrie-2021.json", "cowrie")]
    assert first == again and len(set(first)) == len(first)


@pytest.mark.parametrize("record", [
    [], "x", {"eventid": 3}, {"message": "no eventid"},
    {"eventid": "cowrie.login.failed", "username": {"a": 1}},
    {"eventid": "cowrie.login.failed", "timestamp": "yesterday"},
])
def test_malformed_records_raise_event_error(record: object) -> None:
    with pytest.raises(EventError):
        cowrie(record, orjson.dumps(record))
