"""Format names, `auto` detection, native events and request bodies."""

from __future__ import annotations

import json
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decnet.ttp.engine.events import Event, EventError
from decnet.ttp.inputs import FORMATS, Skipped, mapper, parse_body
from tests.ttp.inputs.fixtures import FIXTURES, events_of, lines

NATIVE = {"source_kind": "command", "source_id": "c1",
          "payload": {"command_text": "uname -a"}, "src_ip": "192.0.2.1"}


def test_formats() -> None:
    assert FORMATS == ("auto", "native", "cowrie", "opencanary")
    with pytest.raises(ValueError, match="unknown input format"):
        mapper("syslog")


def test_auto_reads_each_line_in_its_own_format() -> None:
    auto = events_of("cowrie-2021.json", "auto")
    assert auto == events_of("cowrie-2021.json", "cowrie")
    assert events_of("opencanary.json", "auto") == events_of("opencanary.json", "opencanary")
    line = orjson.dumps(NATIVE)
    mapped = mapper("auto")(NATIVE, line)
    assert not isinstance(mapped, Skipped) and mapped[0].source_id == "c1"
    with pytest.raises(EventError, match="not a native event"):
        mapper("auto")({"hello": 1}, b"{}")


def test_native_keeps_its_own_source_id() -> None:
    mapped = mapper("native")(NATIVE, b"")
    assert not isinstance(mapped, Skipped)
    assert (mapped[0].source_id, mapped[0].src_ip) == ("c1", "192.0.2.1")


def test_a_body_of_json_lines() -> None:
    body = (FIXTURES / "cowrie-2025.json").read_bytes()
    parsed = parse_body(body, "cowrie")
    assert not parsed.errors
    assert parsed.unknown == {"cowrie.telnet.option": 1}
    assert len(parsed.events) == 14
    # the same lines give the same events as the tag job (line hash source ids), and a
    # login learns its protocol from its session's connect within the body
    logins = [e for e in parsed.events if e.source_kind == "auth_attempt"]
    assert [e.payload["service"] for e in logins] == ["telnet", "telnet", "ssh"]
    assert [e.source_id for e in parsed.events] == [
        e.source_id for e in events_of("cowrie-2025.json", "cowrie")]


def test_a_body_of_one_array_or_one_record() -> None:
    records = [orjson.loads(line) for line in lines("opencanary.json")]
    parsed = parse_body(orjson.dumps(records), "opencanary")
    assert len(parsed.events) == 9 and parsed.unknown == {"logtype 17001": 1}
    one = parse_body(orjson.dumps(records[2]), "auto")
    assert [e.source_kind for e in one.events] == ["auth_attempt"]
    again = parse_body(orjson.dumps(records[2]), "auto")
    assert one.events[0].source_id == again.events[0].source_id


def test_bad_records_are_errors_with_their_index() -> None:
    body = b'{"eventid": "cowrie.command.input", "input": "id", "session": "s"}\n' \
           b'{broken\n\n[1]\n'
    parsed = parse_body(body, "cowrie")
    assert len(parsed.events) == 1
    assert [(e.index, e.as_dict()["error"][:9]) for e in parsed.errors] == [
        (1, "malformed"), (3, "a Cowrie ")]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["eventid", "input", "session", "src_ip", "timestamp", "logtype",
                         "logdata", "data", "duration", "dst_port", "source_kind"])
                        | st.text(max_size=5), inner, max_size=6),
                    max_leaves=20),
       st.sampled_from(FORMATS))
def test_any_json_body_is_read_without_raising(value: object, fmt: str) -> None:
    try:
        body = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return
    parse_body(body, fmt)
    parse_body(body + b"\n" + body, fmt)


@pytest.mark.parametrize("record", [
    {"eventid": "cowrie.session.closed", "duration": 10**400, "session": "s"},
    {"eventid": "cowrie.login.failed", "timestamp": 10**400},
    {"source_kind": "command", "source_id": "x", "timestamp": 10**400},
    {"logtype": 4002, "utc_time": 10**400},
])
def test_huge_numbers_cost_their_own_record(record: dict[str, object]) -> None:
    line = orjson.dumps({"eventid": "cowrie.command.input", "input": "id", "session": "s"})
    raw = line + b"\n" + json.dumps(record).encode()  # orjson cannot write such integers
    parsed = parse_body(raw, "auto")
    assert len(parsed.events) + len(parsed.errors) == 2
    assert parsed.events[0].payload["command_text"] == "id"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.fixed_dictionaries(
    {"source_kind": st.sampled_from(["command", "", 3]),
     "source_id": st.sampled_from(["c1", "", 7, None])},
    optional={key: st.none() | st.text(max_size=3) | st.integers() | st.booleans()
              for key in ("attacker_uuid", "session_id", "decky_id", "src_ip", "sensor")}
    | {"payload": st.just({"command_text": "x"}) | st.just([]) | st.none(),
       "timestamp": st.none() | st.integers(0, 10**10) | st.just("2025-01-01T00:00:00Z")}))
def test_the_native_fast_path_agrees_with_from_mapping(record: dict[str, object]) -> None:
    try:
        expected = Event.from_mapping(record)
    except EventError as exc:
        with pytest.raises(EventError, match=re.escape(str(exc))):
            mapper("native")(record, b"")
        return
    assert mapper("native")(record, b"") == [expected]
