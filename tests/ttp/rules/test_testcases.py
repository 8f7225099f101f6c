"""The `tests:` block of a rule file: its shape is checked like every other field."""

from __future__ import annotations

import pytest

from decnet.ttp.errors import RuleSetError
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.testcases import RuleTests

RULE = """\
rule_id: R0001
rule_version: 1
name: uname
applies_to: [command]
match: {pattern: '\\buname\\b'}
emits:
  - {tactic: TA0004, technique_id: T1548, sub_technique_id: T1548.001, confidence: 0.5}
"""


def problems(tests: str) -> list[tuple[str | None, int | None, str]]:
    with pytest.raises(RuleSetError) as caught:
        compile_rule(RULE + tests, source="R0001.yaml")
    return [(e.field, e.line, e.reason) for e in caught.value.errors]


def test_a_well_formed_block_compiles_and_stays_out_of_the_compiled_rule() -> None:
    rule = compile_rule(RULE + """\
tests:
  fires:
    - event: {source_kind: command, payload: {command_text: uname -a}}
      expect: [T1548, T1548.001]
    - sequence:
        - {source_kind: auth_attempt, src_ip: 203.0.113.9, timestamp: 2026-05-01T10:00:00Z,
           payload: {username: root}}
        - {source_kind: command, source_id: c-2, session_id: s-1, sensor: hp-1,
           timestamp: 1777629601, payload: {command_text: uname}}
  quiet:
    - event: {source_kind: command, payload: {command_text: unamed}}
""", source="R0001.yaml")
    assert not hasattr(rule, "tests")
    assert "tests:" in rule.source_yaml
    assert rule == compile_rule(RULE, source="R0001.yaml")


def test_event_and_sequence_are_exclusive_and_one_is_required() -> None:
    found = problems("""\
tests:
  fires:
    - event: {source_kind: command}
      sequence: [{source_kind: command}]
    - expect: [T1548]
""")
    assert [(f, line) for f, line, _ in found] == [("tests.fires.0", 10), ("tests.fires.1", 12)]
    assert all("exactly one of 'event' or 'sequence'" in reason for _, _, reason in found)


def test_a_bare_event_is_told_to_use_event() -> None:
    [(field, line, reason)] = problems("""\
tests:
  quiet:
    - {source_kind: command, payload: {command_text: id}}
""")
    assert (field, line) == ("tests.quiet.0", 10)
    assert "'event: {...}' or 'sequence: [...]'" in reason


@pytest.mark.parametrize(("event", "field", "reason"), [
    ("{source_kind: Command}", "source_kind", "must match [a-z][a-z0-9_]*"),
    ("{source_kind: command, payload: [1]}", "payload", "valid dictionary"),
    ("{source_kind: command, timestamp: 2026-05-01T10:00:00}", "timestamp", "UTC offset"),
    ("{source_kind: command, timestamp: yesterday}", "timestamp", "ISO 8601"),
    ("{source_kind: command, timestamp: -1}", "timestamp", "greater than or equal"),
    ("{source_kind: command, timestamp: true}", "timestamp", "Unix seconds"),
    ("{source_kind: command, src_ip: 7.5}", "src_ip", "valid string"),
    ("{source_kind: command, session_id: true}", "session_id", "valid string"),
    ("{source_kind: command, source_id: ''}", "source_id", "at least 1 character"),
    ("{source_kind: command, comand_text: id}", "comand_text", "unknown key"),
    ("{payload: {}}", "source_kind", "required key is missing"),
])
def test_event_fields_are_checked(event: str, field: str, reason: str) -> None:
    [(where, line, why)] = problems(f"tests:\n  quiet:\n    - event: {event}\n")
    assert where == f"tests.quiet.0.event.{field}"
    assert line == 10
    assert reason in why


def test_quiet_cases_expect_nothing_and_unknown_keys_are_errors() -> None:
    found = problems("""\
tests:
  quiet:
    - event: {source_kind: command}
      expect: [T1548]
  fire: []
""")
    assert {(f, r) for f, _, r in found} == {("tests.quiet.0.expect", "unknown key 'expect'"),
                                            ("tests.fire", "unknown key 'fire'")}


def test_expect_names_a_technique_the_rule_emits() -> None:
    [(field, line, reason)] = problems("""\
tests:
  fires:
    - event: {source_kind: command}
      expect: [T1548.001]
    - event: {source_kind: command}
      expect: [T1082]
""")
    assert (field, line) == ("tests", 9)
    assert reason == "fires.1.expect names T1082, which this rule does not emit"
    [(field, _, reason)] = problems("""\
tests:
  fires:
    - event: {source_kind: command}
      expect: [T15480]
""")
    assert field == "tests.fires.0.expect"
    assert "not an ATT&CK technique" in reason


def test_an_empty_sequence_is_an_error() -> None:
    [(field, _, reason)] = problems("tests:\n  fires:\n    - sequence: []\n")
    assert field == "tests.fires.0.sequence"
    assert "at least 1 item" in reason


def test_source_id_is_generated_only_when_missing() -> None:
    tests = RuleTests.model_validate({"fires": [
        {"event": {"source_kind": "command", "payload": {"a": 1}}},
        {"event": {"source_kind": "command", "source_id": "mine", "session_id": 17,
                   "timestamp": "2026-05-01T10:00:00+02:00"}},
    ]})
    first, second = (case.events[0] for case in tests.fires)
    assert first.as_event("gen") == {"source_kind": "command", "payload": {"a": 1},
                                     "source_id": "gen"}
    assert second.as_event("gen") == {"source_kind": "command", "payload": {},
                                      "source_id": "mine", "session_id": "17",
                                      "timestamp": 1777622400.0}


def test_with_rules_holds_rule_ids() -> None:
    [(field, _, reason)] = problems("tests:\n  with_rules: [R0002, 'a.b']\n")
    assert field == "tests.with_rules"
    assert "'a.b' is not a rule id" in reason
