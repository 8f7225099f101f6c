"""The tag job's blocks: any block size and any number of processes give the same tags."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, Tag
from decnet.ttp.errors import TagJobError
from decnet.ttp.inputs import mapper
from decnet.ttp.jobs.chunks import pack, process_block, unpack
from decnet.ttp.jobs.reading import Block
from decnet.ttp.jobs.tagging import TagJob, TagSummary, correlated_kinds
from decnet.ttp.rules.compiler import compile_rule

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "inputs"
LOGIN = """\
rule_id: R0001
rule_version: 1
name: login
applies_to: [auth_attempt]
match: {pattern: '.'}
emits:
  - {tactic: TA0006, technique_id: T1110, confidence: 0.3}
evidence_fields: [service]
"""


def tagged(data: bytes, *, jobs: int, block_bytes: int) -> tuple[bytes, int]:
    engine = RuleEngine([compile_rule(LOGIN, source="R0001.yaml")])
    sink = io.BytesIO()
    with TagJob(engine, fmt="cowrie", jobs=jobs, block_bytes=block_bytes) as job:
        summary = job.run([("log", io.BytesIO(data))], sink)
    return sink.getvalue(), summary.events


@pytest.mark.parametrize("block_bytes", [64, 700, 1 << 20])
@pytest.mark.parametrize("jobs", [1, 2])
def test_logins_learn_their_protocol_across_blocks(jobs: int, block_bytes: int) -> None:
    data = b"".join((FIXTURES / name).read_bytes()
                    for name in ("cowrie-2021.json", "cowrie-2025.json"))
    out, events = tagged(data, jobs=jobs, block_bytes=block_bytes)
    services = [orjson.loads(line)["evidence"].get("service") for line in out.splitlines()]
    assert services == ["ssh", "ssh", "ssh", "ssh", "telnet", "telnet", "ssh"]
    assert (out, events) == tagged(data, jobs=1, block_bytes=1 << 20)


class Counting(RuleEngine):
    """A stand-in cross-event rule: every third login of a source address is a tag."""

    correlated_kinds = frozenset({"auth_attempt"})

    def __init__(self, *, fail_on: str | None = None) -> None:
        super().__init__([compile_rule(LOGIN, source="R0001.yaml")])
        self.seen: dict[str | None, int] = {}
        self.fail_on = fail_on

    def correlate(self, event: Event, fired: list[Tag]) -> list[Tag]:
        assert event.source_kind == "auth_attempt" and [t.rule_id for t in fired] == ["R0001"]
        if event.payload.get("password") == self.fail_on:
            raise RuntimeError("a cross-event rule bug")
        count = self.seen[event.src_ip] = self.seen.get(event.src_ip, 0) + 1
        if count % 3:
            return []
        return [replace(fired[0], rule_id="X0001", uuid=f"x-{event.source_id}")]


def correlated(engine: RuleEngine, data: bytes, jobs: int) -> tuple[bytes, TagSummary]:
    sink = io.BytesIO()
    with TagJob(engine, fmt="cowrie", jobs=jobs, block_bytes=500) as job:
        summary = job.run([("log", io.BytesIO(data))], sink)
    return sink.getvalue(), summary


def test_cross_event_tags_follow_their_event_in_input_order() -> None:
    data = (FIXTURES / "cowrie-2021.json").read_bytes() * 3
    one, summary = correlated(Counting(), data, jobs=1)
    two, _ = correlated(Counting(), data, jobs=2)
    assert one == two
    tags = [orjson.loads(line) for line in one.splitlines()]
    # logins per address: 203.0.113.9 three per copy, 198.51.100.61 one per copy
    assert [(t["rule_id"], t["src_ip"]) for t in tags if t["rule_id"] == "X0001"] == [
        ("X0001", "203.0.113.9")] * 3 + [("X0001", "198.51.100.61")]
    for index, tag in enumerate(tags):
        if tag["rule_id"] == "X0001":  # right after the tag of the event it completes
            assert tags[index - 1]["source_id"] == tag["source_id"]
    assert summary.rules["X0001"] == 4 and summary.tags == 16


def test_a_failing_cross_event_rule_costs_only_its_own_tags() -> None:
    data = (FIXTURES / "cowrie-2021.json").read_bytes()
    out, summary = correlated(Counting(fail_on="P@ssw0rd"), data, jobs=1)
    assert [orjson.loads(line)["rule_id"] for line in out.splitlines()] == ["R0001"] * 4
    assert [(line, reason) for _, line, reason in summary.bad_line_reasons] == [
        (5, "event not evaluated (RuntimeError)")]


KEYS = st.sampled_from(["eventid", "source_kind", "source_id", "payload", "input", "session",
                        "src_ip", "timestamp", "logtype", "logdata", "data", "username",
                        "protocol", "duration_ms"])


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=6)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8), _containers, max_leaves=15)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(JSONISH.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS))
                | st.binary(max_size=40), max_size=12))
def test_any_lines_are_events_or_reported_lines(lines: list[bytes]) -> None:
    lines = [line.replace(b"\n", b" ") for line in lines]
    engine = RuleEngine([compile_rule(LOGIN, source="R0001.yaml")])
    with TagJob(engine, fmt="auto", jobs=1, block_bytes=64) as job:
        summary = job.run([("log", io.BytesIO(b"\n".join(lines)))], io.BytesIO())
    nonblank = sum(1 for line in lines if line.strip())
    assert summary.bad_lines + summary.skipped <= nonblank
    assert summary.bad_lines <= nonblank


def test_a_block_result_survives_packing() -> None:
    engine = Counting()
    data = (FIXTURES / "cowrie-2021.json").read_bytes() + b"{broken\n"
    block = Block("log", 7, data)
    result = process_block(engine, mapper("cowrie"), block, 1 << 20, "too long",
                           correlated_kinds(engine))
    assert any(not isinstance(item, bytes) and item[2] for item in result.items)
    assert unpack(pickle.loads(pickle.dumps(pack(result)))) == result


class DiesInWorkers(RuleEngine):
    """Kills any process but the one that built it (a worker killed by the OOM killer)."""

    def __init__(self) -> None:
        super().__init__([compile_rule(LOGIN, source="R0001.yaml")])
        self.parent = os.getpid()

    def match(self, event: Event | Mapping[str, object]) -> list[Tag]:
        if os.getpid() != self.parent:
            os._exit(9)
        return super().match(event)


def test_a_dead_worker_is_a_job_error() -> None:
    data = (FIXTURES / "cowrie-2021.json").read_bytes()
    with pytest.raises(TagJobError, match="a worker process died"), \
            TagJob(DiesInWorkers(), fmt="cowrie", jobs=2) as job:
        job.run([("log", io.BytesIO(data))], io.BytesIO())
