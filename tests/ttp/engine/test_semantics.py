"""Evaluation semantics of `RuleEngine`: dispatch, states, lifters, uuids, evidence, changes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from decnet.ttp.constants import TAG_UUID_NAMESPACE
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, tag_uuid
from decnet.ttp.engine.reference import ReferenceEngine
from decnet.ttp.impl import rule_engine
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import DELETED, RESYNC, RuleChange, RuleState, StateName
from tests.ttp.engine.strategies import make_rule
from tests.waiting import poll

PAST = datetime.now(UTC) - timedelta(hours=1)
FUTURE = datetime.now(UTC) + timedelta(hours=4)


def command(text: str, source_id: str = "c1", **extra: Any) -> dict[str, Any]:
    return {"source_kind": "command", "source_id": source_id,
            "payload": {"command_text": text, **extra}}


def fired(engine: RuleEngine, event: dict[str, Any]) -> list[str]:
    return [t.rule_id for t in engine.evaluate(event)]


def wget_rule(rule_id: str = "R0001", **kw: Any) -> CompiledRule:
    return make_rule(rule_id, {"pattern": r"\bwget\b"}, ["command"], **kw)


def test_public_names_are_reexported() -> None:
    assert rule_engine.RuleEngine is RuleEngine
    engine = RuleEngine([wget_rule()])
    assert set(engine.rules) == {"R0001"}
    assert (engine.events_evaluated, engine.tags_emitted, engine.changes_applied) == (0, 0, 0)
    engine.evaluate(command("wget x"))
    assert (engine.events_evaluated, engine.tags_emitted) == (1, 1)


def test_dispatch_is_per_source_kind_with_default_fields() -> None:
    engine = RuleEngine([
        make_rule("R0001", {"contains": "admin"}, ["command"]),
        make_rule("R0002", {"contains": "admin"}, ["auth_attempt"]),
        make_rule("R0003", {"contains": "admin"}, ["http_request"]),
    ])
    assert fired(engine, command("admin")) == ["R0001"]
    auth = {"source_kind": "auth_attempt", "source_id": "a", "payload": {"username": "admin"}}
    assert fired(engine, auth) == ["R0002"]
    http = {"source_kind": "http_request", "source_id": "h",
            "payload": {"raw_url": "/admin", "command_text": "admin"}}
    assert fired(engine, http) == ["R0003"]
    assert fired(engine, {"source_kind": "email", "source_id": "e",
                          "payload": {"subject": "admin"}}) == []


def test_tags_come_in_rule_id_order() -> None:
    rules = [make_rule(f"R{i:04d}", {"pattern": "x"}, ["command"]) for i in (9, 3, 7, 1)]
    assert fired(RuleEngine(rules), command("x")) == ["R0001", "R0003", "R0007", "R0009"]


def test_disabled_rules_are_skipped() -> None:
    engine = RuleEngine([wget_rule(state=RuleState(StateName.DISABLED)),
                         wget_rule("R0002")])
    assert fired(engine, command("wget x")) == ["R0002"]


def test_expired_states_count_as_default() -> None:
    engine = RuleEngine([
        wget_rule("R0001", state=RuleState(StateName.DISABLED, expires_at=PAST)),
        wget_rule("R0002", state=RuleState(StateName.DISABLED, expires_at=FUTURE)),
        wget_rule("R0003", state=RuleState(StateName.CLIPPED, confidence_max=0.1,
                                           expires_at=PAST)),
    ])
    tags = engine.evaluate(command("wget x"))
    assert [(t.rule_id, t.confidence) for t in tags] == [("R0001", 0.7), ("R0003", 0.7)]


def test_clipped_ceiling_clamps_down_only() -> None:
    engine = RuleEngine([
        wget_rule("R0001", confidences=(0.9, 0.2),
                  state=RuleState(StateName.CLIPPED, confidence_max=0.5)),
        wget_rule("R0002", confidences=(0.3,),
                  state=RuleState(StateName.CLIPPED, confidence_max=0.8, expires_at=FUTURE)),
    ])
    tags = engine.evaluate(command("wget"))
    assert [(t.rule_id, t.confidence) for t in tags] == [
        ("R0001", 0.5), ("R0001", 0.2), ("R0002", 0.3)]


def test_lifter_rules_are_skipped() -> None:
    lifter = make_rule("R0005", {"kind": "lifter:session_chain"}, ["command"])
    engine = RuleEngine([lifter, wget_rule()])
    assert "R0005" in engine.rules
    assert fired(engine, command("wget")) == ["R0001"]


def test_tag_uuids_are_deterministic() -> None:
    rule = wget_rule(confidences=(0.9, 0.4))
    first = RuleEngine([rule]).evaluate(command("wget", "c42"))
    again = RuleEngine([rule]).evaluate(command("wget", "c42"))
    assert [t.uuid for t in first] == [t.uuid for t in again]
    namespace = uuid.UUID(TAG_UUID_NAMESPACE)
    assert first[0].uuid == str(uuid.uuid5(
        namespace, "\x1f".join(("command", "c42", "R0001", "1", "T1082", ""))))
    assert first[1].uuid == tag_uuid("command", "c42", "R0001", 1, "T1548", "T1548.001")
    other_version = RuleEngine([wget_rule(version=2)]).evaluate(command("wget", "c42"))
    assert other_version[0].uuid != first[0].uuid


def test_evidence_fields_and_command_context() -> None:
    rule = wget_rule(evidence_fields=("command_text", "missing"))
    tag = RuleEngine([rule]).evaluate(
        command("wget x", uid=0, user="root", src="10.0.0.1", pwd="/tmp", other="no"))[0]
    assert dict(tag.evidence) == {"command_text": "wget x", "uid": 0, "user": "root",
                                  "src": "10.0.0.1", "pwd": "/tmp"}
    auth_rule = make_rule("R0002", {"equals": "root"}, ["auth_attempt"],
                          evidence_fields=("username",))
    auth = {"source_kind": "auth_attempt", "source_id": "a",
            "payload": {"username": "root", "user": "x", "src": "1.2.3.4"}}
    assert dict(RuleEngine([auth_rule]).evaluate(auth)[0].evidence) == {"username": "root"}


def test_tags_carry_event_context() -> None:
    event = {**command("wget"), "attacker_uuid": "att", "session_id": "s", "decky_id": "d"}
    tag = RuleEngine([wget_rule()]).evaluate(event)[0].as_dict()
    assert (tag["attacker_uuid"], tag["session_id"], tag["decky_id"]) == ("att", "s", "d")
    assert tag["attack_release"]


def test_definition_state_and_deletion_changes() -> None:
    engine = RuleEngine([wget_rule()])
    engine.apply(RuleChange("definition", "R0001",
                            make_rule("R0001", {"pattern": r"\bcurl\b"}, ["command"],
                                      version=2)))
    assert fired(engine, command("wget")) == [] and fired(engine, command("curl")) == ["R0001"]
    engine.apply(RuleChange("state", "R0001", RuleState(StateName.DISABLED)))
    assert fired(engine, command("curl")) == []
    engine.apply(RuleChange("state", "R0001", RuleState()))
    assert fired(engine, command("curl")) == ["R0001"]
    engine.apply(RuleChange(DELETED, "R0001"))
    assert fired(engine, command("curl")) == [] and "R0001" not in engine.rules
    engine.apply(RuleChange("state", "R0404", RuleState(StateName.DISABLED)))
    assert "R0404" not in engine.rules
    assert engine.apply(RuleChange(RESYNC, "")) is False
    assert engine.changes_applied == 5


def test_changed_rules_are_exact_before_and_after_compaction() -> None:
    rules = [make_rule(f"R{i:04d}", {"pattern": rf"\bcmd{i}\b"}, ["command"])
             for i in range(50)]
    new = make_rule("R0007", {"any": [{"pattern": r"\bnew\b"}, {"contains": "cmd8"}]},
                    ["command"], version=2)
    # pending: the old bucket entries of R0007 are stale and must be ignored
    pending = RuleEngine(rules)
    pending._index = pending._index.with_rule(new)
    assert pending.pending == 1
    # compacted: `background=False` folds the change in within `apply`
    compacted = RuleEngine(rules, background=False)
    compacted.apply(RuleChange("definition", "R0007", new))
    assert compacted.pending == 0 and compacted.compactions == 1
    for engine in (pending, compacted):
        assert fired(engine, command("new")) == ["R0007"]
        assert fired(engine, command("cmd7")) == []
        assert fired(engine, command("cmd8")) == ["R0007", "R0008"]


async def test_background_compaction_folds_changes_in() -> None:
    rules = [make_rule(f"R{i:04d}", {"pattern": rf"\bcmd{i}\b"}, ["command"])
             for i in range(30)]
    engine = RuleEngine(rules)
    for i in range(30, 40):
        engine.apply(RuleChange("definition", f"R{i:04d}",
                                make_rule(f"R{i:04d}", {"pattern": rf"\bcmd{i}\b"},
                                          ["command"])))
        assert fired(engine, command(f"cmd{i}")) == [f"R{i:04d}"]
    engine.apply(RuleChange(DELETED, "R0003"))
    await poll(lambda: engine.pending == 0, message="compaction")
    reference = ReferenceEngine(engine.rules.values())
    for i in range(40):
        event = command(f"x; cmd{i} -a")
        assert fired(engine, event) == [t.rule_id for t in reference.evaluate(event)]


def test_an_evaluation_finishes_on_the_snapshot_it_started_with() -> None:
    engine = RuleEngine([wget_rule()], background=False)
    snapshot = engine._index
    engine.apply(RuleChange(DELETED, "R0001"))
    assert engine._evaluate(snapshot, Event.from_mapping(command("wget")), traced=False)
    assert fired(engine, command("wget")) == []


def test_replace_all_and_empty_fields() -> None:
    engine = RuleEngine()
    assert engine.evaluate(command("wget")) == []
    engine.replace_all([make_rule("R0001", {"pattern": r"^$"}, ["command"]),
                        make_rule("R0002", {"pattern": r"\B"}, ["command"])])
    assert fired(engine, command("")) == ["R0001"]
    assert fired(engine, {"source_kind": "command", "source_id": "1", "payload": {}}) == []


def test_bad_events_are_rejected() -> None:
    with pytest.raises(ValueError, match="source_kind"):
        RuleEngine().evaluate({"source_id": "1", "payload": {}})


async def test_changes_applied_off_the_loop_compact_in_a_thread() -> None:
    rules = [make_rule(f"R{i:04d}", {"pattern": rf"\bcmd{i}\b"}, ["command"])
             for i in range(20)]
    engine = RuleEngine(rules)
    new = make_rule("R0020", {"pattern": r"\bcmd20\b"}, ["command"])
    # no running loop in that thread: the engine starts its compaction thread
    await asyncio.to_thread(engine.apply, RuleChange("definition", "R0020", new))
    assert fired(engine, command("cmd20")) == ["R0020"]
    await poll(lambda: engine.pending == 0, message="thread compaction")
    assert engine.compactions >= 1
    assert fired(engine, command("cmd20")) == ["R0020"]


@given(parts=st.tuples(st.text(min_size=1), st.text(min_size=1),
                       st.from_regex(r"R\d{4}", fullmatch=True), st.integers(1, 99),
                       st.sampled_from(["T1082", "T1548"]),
                       st.sampled_from([None, "T1548.001"])))
def test_tag_uuid_is_uuid5(parts: tuple[str, str, str, int, str, str | None]) -> None:
    kind, source_id, rule_id, version, technique, sub = parts
    assume(not any("\ud800" <= c <= "\udfff" for c in kind + source_id))
    name = "\x1f".join((kind, source_id, rule_id, str(version), technique, sub or ""))
    expected = str(uuid.uuid5(uuid.UUID(TAG_UUID_NAMESPACE), name))
    assert tag_uuid(kind, source_id, rule_id, version, technique, sub) == expected


def test_compaction_stranded_on_a_closed_loop_restarts() -> None:
    rules = [make_rule(f"R{i:04d}", {"pattern": rf"\bcmd{i}\b"}, ["command"])
             for i in range(5)]
    engine = RuleEngine(rules, background=False)

    async def change() -> None:
        engine.apply(RuleChange("definition", "R0005",
                                make_rule("R0005", {"pattern": r"\bcmd5\b"}, ["command"])))

    asyncio.run(change())  # the loop closes before its compaction callback runs
    assert engine.pending == 1
    assert fired(engine, command("cmd5")) == ["R0005"]
    engine.apply(RuleChange("definition", "R0006",
                            make_rule("R0006", {"pattern": r"\bcmd6\b"}, ["command"])))
    assert engine.pending == 0
    assert fired(engine, command("cmd5 ; cmd6")) == ["R0005", "R0006"]
