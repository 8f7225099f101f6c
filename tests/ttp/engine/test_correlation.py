"""Cross-event rules in `RuleEngine`: windows, thresholds, order, memory bounds, changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decnet.ttp.constants import CORRELATION_EVIDENCE_VALUE_CHARS, CORRELATION_EVIDENCE_VALUES
from decnet.ttp.engine.correlation import Correlator
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, Tag, tag_uuid
from decnet.ttp.errors import RuleSetError
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import DEFINITION, DELETED, STATE, RuleChange, RuleState, StateName

T0 = 1_780_000_000.0
_ids = itertools.count()


def rule(rule_id: str = "R0100", *, kind: str = "auth_attempt",
         match: str = "{field: result, equals: failed}", ctype: str = "event_count",
         group_by: str = "[src_ip]", timespan: str = "5m", condition: str = "{gte: 3}",
         after: str | None = None, emits: str = "T1110", version: int = 1) -> CompiledRule:
    text = (f"rule_id: {rule_id}\nrule_version: {version}\nname: n\napplies_to: [{kind}]\n"
            + (f"match: {match}\n" if match else "")
            + f"correlation:\n  type: {ctype}\n  group_by: {group_by}\n"
            f"  timespan: {timespan}\n  condition: {condition}\n"
            + (f"  after: {after}\n" if after else "")
            + f"emits:\n  - {{tactic: TA0006, technique_id: {emits}, confidence: 0.8}}\n"
            "evidence_fields: [username]\n")
    return compile_rule(text, source=f"{rule_id}.yaml")


def login(at: float, *, ip: str = "192.0.2.10", user: str = "root", password: str = "x",
          result: str = "failed", **extra: Any) -> Event:
    return Event("auth_attempt", f"ev-{next(_ids)}",
                 {"username": user, "password": password, "result": result},
                 src_ip=ip, timestamp=at, **extra)


def run(engine: RuleEngine, events: list[Event]) -> list[Tag]:
    return [tag for event in events for tag in engine.evaluate(event)]


def test_event_count_fires_once_per_group_and_window() -> None:
    engine = RuleEngine([rule()])
    events = [login(T0 + i) for i in range(10)]
    tags = run(engine, events)
    assert len(tags) == 1
    (tag,) = tags
    assert tag.source_id == events[2].source_id  # the completing (third) event
    assert tag.uuid == tag_uuid("auth_attempt", events[2].source_id, "R0100", 1, "T1110", None)
    assert tag.evidence["count"] == 3 and tag.evidence["group"] == {"src_ip": "192.0.2.10"}
    assert tag.evidence["window_start"] == datetime.fromtimestamp(T0, UTC).isoformat() \
        .replace("+00:00", "Z")
    assert tag.evidence["window_end"] == (datetime.fromtimestamp(T0, UTC)
                                          + timedelta(minutes=5)).isoformat() \
        .replace("+00:00", "Z")
    assert tag.evidence["username"] == "root" and tag.src_ip == "192.0.2.10"
    # after the fired window ends, a new window needs three fresh events
    assert run(engine, [login(T0 + 301), login(T0 + 302)]) == []
    assert len(run(engine, [login(T0 + 303)])) == 1


def test_near_misses_do_not_fire() -> None:
    engine = RuleEngine([rule()])
    assert run(engine, [login(T0), login(T0 + 1)]) == []           # below the threshold
    assert run(engine, [login(T0 + 400)]) == []                     # first two left the window
    assert run(engine, [login(T0 + 401, ip="192.0.2.11")]) == []    # another group
    assert run(engine, [login(T0 + 402, result="success")]) == []  # filtered out
    assert run(engine, [login(T0 + 403)]) == []
    assert len(run(engine, [login(T0 + 404)])) == 1


def test_groups_need_every_group_by_value() -> None:
    engine = RuleEngine([rule(group_by="[src_ip, username]")])
    events = [Event("auth_attempt", f"n{i}", {"result": "failed"}, src_ip="192.0.2.1",
                    timestamp=T0 + i) for i in range(5)]
    assert run(engine, events) == []
    events = [login(T0 + i, user="") for i in range(5)]
    assert run(engine, events) == []


def test_group_by_reads_event_fields_then_payload() -> None:
    engine = RuleEngine([rule(group_by="[session, service]", condition="{gte: 2}")])
    a = Event("auth_attempt", "a", {"result": "failed", "service": "ssh"}, session_id="s1",
              timestamp=T0)
    b = Event("auth_attempt", "b", {"result": "failed", "service": "ssh"}, session_id="s1",
              timestamp=T0 + 1)
    (tag,) = run(engine, [a, b])
    assert tag.evidence["group"] == {"session": "s1", "service": "ssh"}


def test_value_count_counts_distinct_values_within_the_window() -> None:
    engine = RuleEngine([rule(ctype="value_count", group_by="[src_ip, username]",
                              condition="{field: password, gte: 3}")])
    same = [login(T0 + i, password="123456") for i in range(5)]
    assert run(engine, same) == []
    assert run(engine, [login(T0 + 10, password="admin")]) == []
    (tag,) = run(engine, [login(T0 + 11, password="root")])
    assert tag.evidence["distinct"] == 3
    assert sorted(tag.evidence["values"]) == ["123456", "admin", "root"]
    # a value seen only before the window does not count towards the next one
    assert run(engine, [login(T0 + 700, password="a"), login(T0 + 701, password="b")]) == []


def test_value_count_evidence_is_bounded() -> None:
    engine = RuleEngine([rule(ctype="value_count", condition="{field: password, gte: 40}")])
    huge = "A" * 100_000
    events = [login(T0 + i, password=f"{huge}{i}") for i in range(40)]
    (tag,) = run(engine, events)
    values = tag.evidence["values"]
    assert tag.evidence["distinct"] == 40
    assert len(values) == CORRELATION_EVIDENCE_VALUES
    assert all(len(v) <= CORRELATION_EVIDENCE_VALUE_CHARS for v in values)
    assert all(v.startswith("sha256:") for v in values)


def test_out_of_order_events_within_the_bound_count() -> None:
    engine = RuleEngine([rule()], max_lateness=60)
    assert run(engine, [login(T0 + 50), login(T0 + 10)]) == []
    (tag,) = run(engine, [login(T0 + 30)])
    assert tag.evidence["window_start"] == datetime.fromtimestamp(T0 + 10, UTC).isoformat() \
        .replace("+00:00", "Z")
    assert engine.correlation_stats.late_events == 0


def test_events_later_than_the_bound_are_counted_as_late() -> None:
    engine = RuleEngine([rule()], max_lateness=60)
    assert run(engine, [login(T0 + 1000), login(T0 + 1001)]) == []
    assert run(engine, [login(T0 + 900)]) == []  # 100 s late: dropped
    assert engine.correlation_stats.late_events == 1
    assert len(run(engine, [login(T0 + 1002)])) == 1


def test_events_from_the_future_do_not_move_event_time() -> None:
    engine = RuleEngine([rule()])
    assert run(engine, [login(T0), login(T0 + 1)]) == []
    far = Event("auth_attempt", "far", {"result": "failed"}, src_ip="192.0.2.10",
                timestamp=datetime.now(UTC).timestamp() + 3 * 86_400)
    assert run(engine, [far]) == []
    assert engine.correlation_stats.future_events == 1
    assert len(run(engine, [login(T0 + 2)])) == 1
    assert engine.correlation_stats.late_events == 0


def test_live_groups_are_capped_and_evictions_counted() -> None:
    engine = RuleEngine([rule(condition="{gte: 2}")], max_groups=100)
    run(engine, [login(T0, ip=f"10.0.{i // 250}.{i % 250}") for i in range(1000)])
    stats = engine.correlation_stats
    assert stats.live_groups == 100
    assert stats.groups_evicted == 900
    # an evicted group starts again from zero
    assert run(engine, [login(T0 + 1, ip="10.0.0.0")]) == []


def test_groups_whose_window_passed_expire() -> None:
    engine = RuleEngine([rule()], max_lateness=10)
    run(engine, [login(T0, ip=f"10.1.0.{i}") for i in range(50)])
    run(engine, [login(T0 + 5 * 60 + 11, ip="10.2.0.1")])
    stats = engine.correlation_stats
    assert stats.groups_expired == 50 and stats.live_groups == 1


def test_after_needs_the_prerequisite_in_the_same_group_before() -> None:
    brute = rule("R0100")
    valid = rule("R0101", match="{field: result, equals: success}", condition="{gte: 1}",
                 timespan="1h", after="{rules: [R0100]}", emits="T1078")
    engine = RuleEngine([valid, brute])
    # success without a brute force first
    assert run(engine, [login(T0, result="success")]) == []
    tags = run(engine, [login(T0 + i, ip="198.51.100.7") for i in range(1, 4)])
    assert [t.rule_id for t in tags] == ["R0100"]
    # another source's success is not this group's
    assert run(engine, [login(T0 + 5, result="success")]) == []
    (tag,) = run(engine, [login(T0 + 6, ip="198.51.100.7", result="success")])
    assert tag.rule_id == "R0101" and tag.technique_id == "T1078"
    # a success more than the window after the brute force does not count
    engine = RuleEngine([valid, brute])
    run(engine, [login(T0 + i, ip="198.51.100.8") for i in range(3)])
    assert run(engine, [login(T0 + 3700, ip="198.51.100.8", result="success")]) == []


def test_after_by_technique_and_same_event_order() -> None:
    brute = rule("R0200", emits="T1110")
    valid = rule("R0100", match="", kind="auth_attempt", condition="{gte: 1}",
                 after="{techniques: [T1110]}", emits="T1078")
    engine = RuleEngine([brute, valid])
    tags = run(engine, [login(T0 + i) for i in range(3)])
    # R0100 runs after R0200 on the completing event although its id sorts first
    assert [t.rule_id for t in tags] == ["R0200", "R0100"]


def test_states_disable_and_clip() -> None:
    base = rule()
    engine = RuleEngine([base.with_state(RuleState(state=StateName.DISABLED))])
    assert run(engine, [login(T0 + i) for i in range(5)]) == []
    clipped = RuleState(state=StateName.CLIPPED, confidence_max=0.2)
    engine = RuleEngine([base.with_state(clipped)])
    (tag,) = run(engine, [login(T0 + i) for i in range(3)])
    assert tag.confidence == 0.2


def test_rule_changes_reach_the_correlation_rules() -> None:
    engine = RuleEngine([rule()])
    run(engine, [login(T0), login(T0 + 1)])
    # a state change keeps the counts
    engine.apply(RuleChange(STATE, "R0100", RuleState(state=StateName.CLIPPED,
                                                       confidence_max=0.5)))
    (tag,) = run(engine, [login(T0 + 2)])
    assert tag.confidence == 0.5
    run(engine, [login(T0 + 400), login(T0 + 401)])
    # a new definition restarts its groups
    engine.apply(RuleChange(DEFINITION, "R0100", rule(version=2)))
    assert run(engine, [login(T0 + 402)]) == []
    assert len(run(engine, [login(T0 + 403), login(T0 + 404)])) == 1
    engine.apply(RuleChange(DELETED, "R0100", None))
    assert run(engine, [login(T0 + 1000 + i) for i in range(5)]) == []
    assert engine.correlation_stats.live_groups == 0
    engine.replace_all([rule(condition="{gte: 1}")])
    assert len(run(engine, [login(T0 + 2000)])) == 1


def test_correlation_rules_never_fire_per_event() -> None:
    engine = RuleEngine([rule(condition="{gte: 1}")])
    assert engine.match(login(T0)) == []
    assert len(engine.evaluate(login(T0 + 1))) == 1


def test_events_without_time_use_the_clock() -> None:
    clock = iter([T0, T0 + 1, T0 + 1000, T0 + 1001, T0 + 1002])
    correlator = Correlator([rule()], clock=lambda: next(clock))
    untimed = [Event("auth_attempt", f"u{i}", {"result": "failed"}, src_ip="192.0.2.1")
               for i in range(5)]
    out = [correlator.correlate(e, []) for e in untimed]
    assert [len(t) for t in out] == [0, 0, 0, 0, 1]


@pytest.mark.parametrize(("body", "reason"), [
    ("  type: count\n  group_by: [src_ip]\n  timespan: 5m\n  condition: {gte: 3}\n", "type"),
    ("  type: event_count\n  group_by: []\n  timespan: 5m\n  condition: {gte: 3}\n",
     "group_by"),
    ("  type: event_count\n  group_by: [src_ip]\n  timespan: soon\n  condition: {gte: 3}\n",
     "90s, 5m"),
    ("  type: event_count\n  group_by: [src_ip]\n  timespan: 30d\n  condition: {gte: 3}\n",
     "longer than"),
    ("  type: event_count\n  group_by: [src_ip]\n  timespan: 5m\n  condition: {lt: 3}\n",
     "lt"),
    ("  type: event_count\n  group_by: [src_ip]\n  timespan: 5m\n  condition: {}\n",
     "exactly one of gte or gt"),
    ("  type: value_count\n  group_by: [src_ip]\n  timespan: 5m\n  condition: {gte: 3}\n",
     "condition.field"),
    ("  type: event_count\n  group_by: [src_ip]\n  timespan: 5m\n  condition: {gte: 3}\n"
     "  after: {}\n", "after needs"),
    ("  type: event_count\n  group_by: [src_ip]\n  timespan: 5m\n  condition: {gte: 3}\n"
     "  after: {techniques: [TA0001]}\n", "technique id"),
])
def test_bad_correlation_blocks_are_rule_errors(body: str, reason: str) -> None:
    text = ("rule_id: R0100\nrule_version: 1\nname: n\napplies_to: [auth_attempt]\n"
            "correlation:\n" + body
            + "emits:\n  - {tactic: TA0006, technique_id: T1110, confidence: 0.8}\n")
    with pytest.raises(RuleSetError) as caught:
        compile_rule(text, source="R0100.yaml")
    assert any(reason in str(e) for e in caught.value.errors), caught.value.errors


def test_gt_is_one_more_than_gte_and_match_may_be_absent() -> None:
    spec = rule(condition="{gt: 3}", match="").correlation
    assert spec is not None and spec.threshold == 4
    assert spec.filters == {"auth_attempt": None}


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 900)), min_size=1, max_size=60),
       st.integers(1, 5))
def test_every_tag_is_backed_by_a_full_window_and_windows_do_not_overlap(
        raw: list[tuple[int, int]], threshold: int) -> None:
    events = [login(T0 + at, ip=f"192.0.2.{source}")
              for source, at in sorted(raw, key=lambda r: r[1])]
    engine = RuleEngine([rule(condition=f"{{gte: {threshold}}}", timespan="100s")])
    times: dict[str, list[float]] = {}
    last_end: dict[str, float] = {}
    for event in events:
        assert event.src_ip is not None and event.timestamp is not None
        times.setdefault(event.src_ip, []).append(event.timestamp)
        for tag in engine.evaluate(event):
            start = datetime.fromisoformat(tag.evidence["window_start"]).timestamp()
            end = datetime.fromisoformat(tag.evidence["window_end"]).timestamp()
            inside = [t for t in times[event.src_ip] if start <= t <= event.timestamp]
            assert end - start == 100 and start <= event.timestamp <= end
            assert len(inside) >= threshold
            assert start > last_end.get(event.src_ip, float("-inf"))
            last_end[event.src_ip] = end
    # no group is left holding a full window after its last tag: it would have fired
    for source, stamps in times.items():
        fresh = [t for t in stamps if t > last_end.get(source, float("-inf"))]
        assert not any(sum(1 for t in fresh if s <= t <= s + 100) >= threshold
                       for s in fresh)


def test_hostile_group_values_cost_a_bounded_key() -> None:
    engine = RuleEngine([rule(group_by="[src_ip, username]", condition="{gte: 2}")])
    huge = "\x1b[31m" + "u" * 500_000
    events = [login(T0 + i, user=huge) for i in range(2)]
    (tag,) = run(engine, events)
    shown = tag.evidence["group"]["username"]
    assert shown.startswith("sha256:") and len(shown) == len("sha256:") + 64
    # values that are not text (objects, lists) never form a group
    odd = [Event("auth_attempt", f"o{i}", {"result": "failed", "username": {"a": [1]}},
                 src_ip="192.0.2.99", timestamp=T0 + i) for i in range(3)]
    assert run(engine, odd) == []
