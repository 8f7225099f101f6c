"""Hostile events: exact JSON in, bounded tags out, one bad event never costs another."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decnet.ttp.constants import (
    EVENT_MAX_ID_CHARS,
    EVIDENCE_MAX_DEPTH,
    EVIDENCE_MAX_VALUE_BYTES,
)
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError, Tag
from decnet.ttp.engine.jsonio import (
    TAG_MAX_BYTES,
    JSONInputError,
    dump_tag,
    dump_tag_within,
    dump_tags,
    parse_json,
)
from decnet.ttp.jobs.tagging import tag_stream
from tests.ttp.engine.strategies import make_rule

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BIG = 18446744073709551616  # 2**64: one past what orjson reads as an integer


def engine_with_evidence(*fields: str) -> RuleEngine:
    return RuleEngine([make_rule("R0001", {"pattern": r"\bwget\b"}, ["command"],
                                 evidence_fields=("command_text", *fields))])


def run_job(engine: RuleEngine, *lines: bytes) -> tuple[list[dict[str, Any]], Any]:
    sink = io.BytesIO()
    summary = tag_stream(engine, io.BytesIO(b"\n".join(lines) + b"\n"), sink)
    return [json.loads(line) for line in sink.getvalue().splitlines()], summary


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def command(source_id: str, **payload: Any) -> dict[str, Any]:
    return {"source_kind": "command", "source_id": source_id,
            "payload": {"command_text": "wget x", **payload}}


def test_deeply_nested_evidence_is_cut_and_the_batch_goes_on() -> None:
    deep = json.dumps(command("deep", blob=nested(300))).encode()
    plain = orjson.dumps(command("plain"))
    tags, summary = run_job(engine_with_evidence("blob"), deep, plain)
    assert [t["source_id"] for t in tags] == ["deep", "plain"]
    assert tags[0]["evidence_truncated"] is True and "evidence_truncated" not in tags[1]
    blob, depth = tags[0]["evidence"]["blob"], 1
    while isinstance(blob, list):
        blob, depth = blob[0], depth + 1
    assert blob == f"…[nested deeper than {EVIDENCE_MAX_DEPTH} levels]"
    assert depth == EVIDENCE_MAX_DEPTH + 1
    assert summary.bad_lines == 0


def test_integers_beyond_64_bits_keep_their_exact_value() -> None:
    line = b'{"source_kind":"command","source_id":"n","payload":{"command_text":"wget",' \
           b'"n":18446744073709551616,"m":-9223372036854775809,"f":1.5,"s":"12345678901234567890"}}'
    tags, _ = run_job(engine_with_evidence("n", "m", "f", "s"), line)
    evidence = tags[0]["evidence"]
    assert evidence["n"] == BIG and evidence["m"] == -(1 << 63) - 1
    assert evidence["f"] == 1.5 and evidence["s"] == "12345678901234567890"
    tag = Tag("u", "command", "n", "R0001", 1, "TA0007", "T1082", None, 0.5, {"n": BIG})
    assert tag.as_dict()["evidence"] == {"n": BIG}  # a plain int in the object view
    assert b'"evidence":{"n":18446744073709551616}' in dump_tag(tag)


def test_bad_lines_are_errors_of_their_own() -> None:
    lines = [b'{"source_kind":"command","source_id":"' + b"1" * 5000 + b'","payload":{}}',
             b'{"source_kind":"command","source_id":"a","payload":{"x":' + b"9" * 5000 + b"}}",
             b'{"source_kind":"command","source_id":"a","timestamp":' + b"9" * 400 + b"}",
             b'"\\ud800"', b"[" * 2000 + b"]" * 2000, orjson.dumps(command("ok"))]
    tags, summary = run_job(engine_with_evidence(), *lines)
    assert [t["source_id"] for t in tags] == ["ok"]
    assert summary.bad_lines == 5


def test_one_huge_field_gives_a_bounded_tag() -> None:
    event = command("big", user="u" * (1 << 20), src="\x01" * (1 << 16))
    tags = engine_with_evidence().evaluate(event)
    data = dump_tag(tags[0])
    assert len(data) <= TAG_MAX_BYTES
    tag = json.loads(data)
    assert tag["evidence_truncated"] is True
    assert tag["evidence"]["user"].startswith("u" * 100)
    assert tag["evidence"]["user"].endswith(
        f"…[truncated: {(1 << 20) - EVIDENCE_MAX_VALUE_BYTES} more characters]")


def test_odd_python_values_are_marked_never_raised() -> None:
    class Thing:
        pass

    payload = {"command_text": "wget \ud800", "user": {1: b"x", None: {Thing()}, (1,): 10**5000},
               "src": [math.nan, math.inf, 2**200, -(2**70)], "uid": "\udfff"}
    event = Event("command", "odd", payload)
    tags = engine_with_evidence().evaluate(event)
    tag = json.loads(dump_tag(tags[0]))
    assert tag["evidence"]["command_text"] == "wget \ufffd" and tag["evidence"]["uid"] == "\ufffd"
    assert tag["evidence"]["user"] == {"1": "…[bytes is no JSON value]",
                                       "null": "…[set is no JSON value]",
                                       "<tuple>": "…[integer of 16610 bits]"}
    assert tag["evidence"]["src"] == [None, None, 2**200, -(2**70)]
    assert json.loads(dump_tags(tags)) == [tag]


def test_a_field_too_long_to_read_as_text_is_no_match() -> None:
    engine = RuleEngine([make_rule("R0001", {"pattern": "9"}, ["command"])])
    event = Event("command", "n", {"command_text": 10**5000})
    assert engine.evaluate(event) == []
    assert len(engine.evaluate(Event("command", "m", {"command_text": 99}))) == 1


def test_event_identity_fields_refuse_hostile_values() -> None:
    for bad in ({"source_kind": "command", "source_id": "a\ud800"},
                {"source_kind": "c\udc00", "source_id": "a"},
                {"source_kind": "command", "source_id": "x" * (EVENT_MAX_ID_CHARS + 1)},
                {"source_kind": "command", "source_id": 10**60},
                {"source_kind": "command", "source_id": "a", "timestamp": 10**400},
                {"source_kind": "command", "source_id": "a", "sensor": ["x"]}):
        with pytest.raises(EventError):
            Event.from_mapping(bad)
    assert Event.from_mapping({"source_kind": "command", "source_id": 7}).source_id == "7"


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.text(st.characters(), max_size=40))
def _python_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.text(max_size=8) | st.integers()
    return st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5)


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)


PYTHON_VALUES = st.recursive(JSON_SCALARS | st.binary(max_size=4), _python_containers,
                             max_leaves=40)
JSON_LINES = st.recursive(JSON_SCALARS, _json_containers, max_leaves=30).map(
    lambda v: json.dumps(v).encode())


def _deep(value: Any, depth: int) -> Any:
    return nested(depth) if depth else value


@SETTINGS
@given(evidence=st.dictionaries(st.text(max_size=8), PYTHON_VALUES, max_size=6),
       depth=st.sampled_from([0, 0, 40, 300]),
       source_id=st.text(st.characters(), min_size=1, max_size=30))
def test_any_evidence_serializes_within_the_bound(
        evidence: dict[str, Any], depth: int, source_id: str) -> None:
    evidence["deep"] = _deep(evidence.get("deep"), depth)
    tag = Tag("u", "command", source_id, "R0001", 1, "TA0007", "T1082", None, 0.5, evidence,
              sensor="s\ud800")
    data = dump_tag(tag)
    assert len(data) <= TAG_MAX_BYTES
    decoded = json.loads(data)
    assert decoded["sensor"] == "s\ufffd"
    assert set(decoded["evidence"]) <= {*(k for k in evidence), "…"}


@SETTINGS
@given(evidence=st.dictionaries(st.text(max_size=8), PYTHON_VALUES, max_size=6),
       depth=st.sampled_from([0, 40, 300]), repeat=st.sampled_from([1, 100, 5000]),
       text=st.text(st.characters(), min_size=1, max_size=30))
def test_a_sample_fits_its_bytes_whatever_the_tag_holds(
        evidence: dict[str, Any], depth: int, repeat: int, text: str) -> None:
    """`dump_tag_within`: within the bytes asked (2 KiB here), valid JSON, the fixed fields
    intact and cuts marked, even with every text long or escaping to six bytes a character."""
    evidence["deep"] = _deep(evidence.get("deep"), depth)
    long = text * repeat
    tag = Tag("u", long, long, "R0001", 1, "TA0007", "T1082", None, 0.5,
              {**evidence, "t": long}, attacker_uuid=long, session_id=long, decky_id=long,
              src_ip=long, sensor=long)
    data = dump_tag_within(tag, 2048)
    assert len(data) <= 2048
    decoded = json.loads(data)
    assert (decoded["rule_id"], decoded["technique_id"], decoded["tactic"]) == (
        "R0001", "T1082", "TA0007")
    if len(dump_tag(tag)) > 2048:
        assert decoded["evidence_truncated"] is True


@SETTINGS
@given(raw=st.binary(max_size=200) | JSON_LINES)
def test_any_line_is_an_event_or_an_event_error(raw: bytes) -> None:
    try:
        data = parse_json(raw)
    except JSONInputError:
        return
    if isinstance(data, dict):
        data.setdefault("source_kind", "command")
        data.setdefault("source_id", "x")
    try:
        event = Event.from_mapping(data)
    except EventError:
        return
    for tag in engine_with_evidence("user").evaluate(event):
        assert len(dump_tag(tag)) <= TAG_MAX_BYTES


FUZZ_ENGINE = RuleEngine([
    make_rule("R0001", {"pattern": r"\bwget\b"}, ["command"],
              evidence_fields=("command_text", "user", "blob")),
    make_rule("R0002", {"pattern": r"(?<!x)a(?=b)|(.)\1"}, ["command"],
              evidence_fields=("blob",)),
    make_rule("R0003", {"any": [{"contains": "a", "field": "blob.x"},
                                {"pattern": "^$", "field": "user"}]}, ["command"]),
])


@SETTINGS
@given(payload=st.dictionaries(st.sampled_from(["command_text", "user", "blob", "x"]),
                               PYTHON_VALUES, max_size=4),
       text=st.text(st.characters(), max_size=20))
def test_any_python_payload_is_evaluated_and_written(payload: dict[str, Any], text: str) -> None:
    """Events built in Python skip the JSON reader: any values, lone surrogates included."""
    payload.setdefault("command_text", f"wget {text}")
    for tag in FUZZ_ENGINE.evaluate(Event("command", "fuzz", payload)):
        assert len(dump_tag(tag)) <= TAG_MAX_BYTES
        assert isinstance(tag.as_dict()["evidence"], dict)


def test_parse_json_is_exact_where_orjson_is_not() -> None:
    assert parse_json(b'{"a":[1,18446744073709551615,18446744073709551616]}') == \
        {"a": [1, (1 << 64) - 1, 1 << 64]}
    assert parse_json(b"0.1234567890123456789") == 0.1234567890123456789
    for bad in (b"NaN", b"1e400", b'"\\ud800"', b"{", b"9" * 5000):
        with pytest.raises(JSONInputError):
            parse_json(bad)
