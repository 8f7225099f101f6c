"""`TagHits`: a worker's tag counters and samples as its fleet report carries them — the
shape, the caps on rules, techniques and sample bytes, hostile evidence, and the
evaluation path that feeds them."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from decnet.swarm.http.batch import evaluate_body
from decnet.swarm.http.hits import TagHits, TagTally
from decnet.swarm.http.limits import HttpLimits
from decnet.ttp.constants import (
    FLEET_REPORT_MAX_RULES,
    FLEET_REPORT_MAX_TECHNIQUES,
    FLEET_REPORT_SAMPLE_BYTES,
    HITS_SAMPLE_MAX_BYTES,
    HITS_SAMPLES_PER_TECHNIQUE,
)
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Tag
from decnet.ttp.rules.loader import load_directory

SHIPPED = Path(__file__).resolve().parents[3] / "rules" / "ttp"
T0 = 1_800_000_000.0
#: The documented bound of a report's `tags` member with every cap reached.
REPORT_TAGS_BOUND = 200 * 1024


def tag(rule_id: str = "R0001", technique: str = "T1082", tactic: str = "TA0007",
        evidence: dict[str, Any] | None = None, **extra: Any) -> Tag:
    return Tag(uuid=str(uuid.uuid4()), source_kind="command", source_id="c1",
               rule_id=rule_id, rule_version=1, tactic=tactic, technique_id=technique,
               sub_technique_id=None, confidence=0.7,
               evidence=evidence or {"command_text": "uname -a"}, **extra)


def record(hits: TagHits, tags: list[Tag], now: float = T0) -> None:
    """One request of one event per tag."""
    tally = TagTally()
    for one in tags:
        tally.add([one])
    hits.record(tally, now)


def report(hits: TagHits, now: float = T0) -> dict[str, Any]:
    """The report's `tags` member as the master reads it (through JSON)."""
    fields: dict[str, Any] = orjson.loads(orjson.dumps(hits.report_fields(now)))
    return fields


def test_the_report_counts_tags_per_minute_rule_and_technique() -> None:
    hits = TagHits()
    record(hits, [tag(), tag(), tag("R0002", "T1059", "TA0002")], T0)
    record(hits, [tag()], T0 + 3600)
    fields = report(hits, T0 + 3600)
    assert fields["per_minute"] == [[int((T0 + 3600) // 60), 1]]
    assert fields["rules"] == {"R0001": [1, 3], "R0002": [0, 1]}
    assert fields["techniques"] == {"TA0007/T1082": [1, 3], "TA0002/T1059": [0, 1]}
    assert fields["omitted"] == {"rules": [0, 0, 0], "techniques": [0, 0, 0]}
    assert [s["tag"]["technique_id"] for s in fields["samples"]] == ["T1082", "T1059", "T1082"]
    assert report(hits, T0 + 2 * 86_400) == {
        "per_minute": [], "rules": {}, "techniques": {},
        "omitted": {"rules": [0, 0, 0], "techniques": [0, 0, 0]}, "samples": []}


def test_a_rule_hits_once_per_event_whatever_it_emits() -> None:
    tally = TagTally()
    tally.add([tag(), tag(technique="T1548.001", tactic="TA0004"), tag("R0002")])
    assert (tally.tags, dict(tally.rules)) == (3, {"R0001": 1, "R0002": 1})
    assert dict(tally.techniques) == {"TA0007/T1082": 2, "TA0004/T1548.001": 1}


def test_a_request_without_tags_adds_nothing() -> None:
    hits = TagHits()
    hits.record(TagTally(), T0)
    assert report(hits)["per_minute"] == []


def test_samples_keep_the_latest_few_per_technique_newest_first() -> None:
    hits = TagHits()
    for n in range(HITS_SAMPLES_PER_TECHNIQUE + 2):
        record(hits, [tag(evidence={"n": n})], T0 + n)
    record(hits, [tag("R0002", "T1059", "TA0002")], T0 + 1)
    samples = report(hits, T0 + 10)["samples"]
    ns = [s["tag"]["evidence"].get("n") for s in samples]
    # the newest of each technique first, then the older ones, newest first
    assert ns[:2] == [HITS_SAMPLES_PER_TECHNIQUE + 1, None]
    assert ns[2:] == [HITS_SAMPLES_PER_TECHNIQUE, HITS_SAMPLES_PER_TECHNIQUE - 1]


def test_hostile_evidence_is_cut_within_the_sample_bound() -> None:
    hits = TagHits()
    evil = {"command_text": "<script>alert(1)</script>" + "A" * 100_000,
            "nested": [[[[["deep"]]]]] * 500, "\ud800": "lone surrogate key"}
    record(hits, [tag(evidence=evil, decky_id="<img src=x onerror=alert(1)>" * 500)])
    [sample] = report(hits)["samples"]
    size = len(orjson.dumps(sample["tag"]))
    assert size <= HITS_SAMPLE_MAX_BYTES
    assert sample["tag"]["evidence"]["command_text"].startswith("<script>alert(1)</script>")
    assert sample["tag"]["evidence_truncated"] is True
    # every text escapes to six bytes a character: still within the bound
    control = "\x01" * 5000
    record(hits, [tag(technique="T1000", evidence={control: control}, decky_id=control,
                      src_ip=control, sensor=control, attacker_uuid=control,
                      session_id=control)])
    sizes = [len(orjson.dumps(s["tag"])) for s in report(hits)["samples"]]
    assert len(sizes) == 2 and max(sizes) <= HITS_SAMPLE_MAX_BYTES


def test_every_cap_reached_keeps_the_report_within_its_bound() -> None:
    """10,000 rules of 64-character ids, more techniques than itemized, and samples
    bloated to their own cap: the report itemizes the most hit, sums the rest, and its
    `tags` member stays within the documented bound."""
    hits = TagHits()
    tally = TagTally()
    for n in range(10_000):
        tally.rules[f"R{n:063d}"] = 1_000_000_000 + n
    for n in range(FLEET_REPORT_MAX_TECHNIQUES + 200):
        key = f"TA{n % 100:04d}/T{n // 10:04d}.{n % 10:03d}"
        tally.techniques[key] = 10**12
        tally.latest[key] = tag(technique=f"T{n // 10:04d}", evidence={"x": "B" * 10_000})
    tally.tags = 1
    hits.record(tally, T0)
    fields = report(hits)
    assert len(fields["rules"]) == FLEET_REPORT_MAX_RULES
    assert next(iter(fields["rules"])) == f"R{9999:063d}"  # the most hit first
    assert fields["omitted"]["rules"][0] == 10_000 - FLEET_REPORT_MAX_RULES
    assert len(fields["techniques"]) == FLEET_REPORT_MAX_TECHNIQUES
    assert fields["omitted"]["techniques"][0] == 200
    sample_bytes = sum(len(orjson.dumps(s)) for s in fields["samples"])
    assert sample_bytes <= FLEET_REPORT_SAMPLE_BYTES
    assert len(orjson.dumps(fields)) <= REPORT_TAGS_BOUND


@pytest.mark.parametrize("log_format", [None, "native"])
def test_the_evaluation_path_counts_every_tag_even_past_the_response_caps(
        log_format: str | None) -> None:
    rules = load_directory(SHIPPED).rules
    engine = RuleEngine([rules["R0001"]], background=False)
    events = [{"source_kind": "command", "source_id": f"c{n}",
               "payload": {"command_text": "uname -a"}} for n in range(5)]
    tally = TagTally()
    outcome = evaluate_body(engine, orjson.dumps(events),
                            HttpLimits(max_response_tags=2), log_format, tally)
    assert outcome.tags_omitted == 3
    assert (tally.tags, dict(tally.rules), dict(tally.techniques)) == (
        5, {"R0001": 5}, {"TA0007/T1082": 5})


def test_reports_read_while_the_evaluation_thread_records() -> None:
    """The report (the loop's thread) and `record` (the evaluation thread) share the
    counters under one lock: reads never fail and the final counts are exact."""
    hits = TagHits()
    requests = 2_000
    rules = [f"R{n:04d}" for n in range(50)]

    def evaluate() -> None:
        for n in range(requests):
            tally = TagTally()
            tally.add([tag(rules[n % len(rules)], f"T{1000 + n % 7}")])
            hits.record(tally, T0 + n * 0.01)

    thread = threading.Thread(target=evaluate)
    thread.start()
    reads = 0
    while thread.is_alive():
        hits.report_fields(T0 + 1)
        reads += 1
    thread.join()
    fields = report(hits, T0 + 30)
    assert reads > 0
    assert sum(day for _, day in fields["rules"].values()) == requests
    assert sum(day for _, day in fields["techniques"].values()) == requests
    assert sum(count for _, count in fields["per_minute"]) == requests
