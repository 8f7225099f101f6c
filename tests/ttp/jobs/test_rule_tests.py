"""Running rule tests: each rule alone, fresh per case, failures explained."""

from __future__ import annotations

from dataclasses import replace

from decnet.ttp.jobs.rule_tests import rule_tests, run_rule_tests
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import RuleState, StateName

UNAME = """\
rule_id: R0001
rule_version: 1
name: uname
applies_to: [command]
match: {pattern: '\\buname\\b'}
emits:
  - {tactic: TA0007, technique_id: T1082, confidence: 0.5}
"""
WHOAMI = """\
rule_id: R0002
rule_version: 1
name: whoami
applies_to: [command]
match: {pattern: '\\bwhoami\\b'}
emits:
  - {tactic: TA0007, technique_id: T1033, confidence: 0.5}
"""


def rule(text: str, tests: str = "", **kwargs: object) -> CompiledRule:
    return compile_rule(text + tests, source="R.yaml", **kwargs)  # type: ignore[arg-type]


def cmd(text: str) -> str:
    return f"{{source_kind: command, payload: {{command_text: '{text}'}}}}"


def test_passing_cases_and_rules_without_tests() -> None:
    report = run_rule_tests([
        rule(UNAME, f"tests:\n  fires:\n    - event: {cmd('uname -a')}\n      expect: [T1082]\n"
                    f"  quiet:\n    - event: {cmd('unamed')}\n"),
        rule(WHOAMI),
    ])
    assert report.ok
    assert report.rules_tested == 1
    assert [(r.kind, r.index, r.line) for r in report.results] == [("fires", 0, 10),
                                                                  ("quiet", 0, 13)]
    assert report.untested == ["R0002"]
    assert [t.technique_id for t in report.results[0].tags] == ["T1082"]


def test_failures_say_why_and_name_the_other_rules_that_match() -> None:
    report = run_rule_tests([
        rule(UNAME, f"tests:\n  fires:\n    - event: {cmd('whoami')}\n"
                    f"  quiet:\n    - event: {cmd('uname; whoami')}\n"),
        rule(WHOAMI),
    ])
    missed, noisy = report.failures
    assert (missed.kind, missed.reason, missed.tags) == ("fires", "did not fire", ())
    assert missed.pack_matches == ("R0002",)
    assert missed.events[0]["source_id"] == "test-R0001-fires-0"
    assert (noisy.kind, noisy.reason) == ("quiet", "fired on an event it must leave alone")
    assert [t.rule_id for t in noisy.tags] == ["R0001"]
    assert noisy.pack_matches == ("R0001", "R0002")
    assert not report.ok


def test_a_test_runs_the_rule_alone_enabled_whatever_its_state() -> None:
    disabled = rule(UNAME, f"tests:\n  fires:\n    - event: {cmd('uname')}\n",
                    state=RuleState(StateName.DISABLED))
    clipped = rule(WHOAMI, f"tests:\n  quiet:\n    - event: {cmd('uname')}\n")
    report = run_rule_tests([disabled, clipped])
    assert report.ok, report.failures


def test_a_missing_expected_technique_fails() -> None:
    two = UNAME + "  - {tactic: TA0007, technique_id: T1033, confidence: 0.4}\n"
    ok = rule(two, f"tests:\n  fires:\n    - event: {cmd('uname')}\n      expect: [T1033]\n")
    assert run_rule_tests([ok]).ok
    # a compiled rule whose emits no longer match its tests' text
    report = run_rule_tests([replace(ok, emits=ok.emits[:1])])
    [failure] = report.failures
    assert failure.reason == "fired without expected T1033"
    assert [t.technique_id for t in failure.tags] == ["T1082"]


def test_a_sequence_fires_when_any_of_its_events_is_tagged_and_is_quiet_only_if_none() -> None:
    report = run_rule_tests([rule(UNAME, f"""\
tests:
  fires:
    - sequence: [{cmd('id')}, {cmd('uname')}]
  quiet:
    - sequence: [{cmd('id')}, {cmd('uname -r')}, {cmd('w')}]
""")])
    fired, quiet = report.results
    assert fired.passed and len(fired.events) == 2
    assert [e["source_id"] for e in fired.events] == ["test-R0001-fires-0-0",
                                                     "test-R0001-fires-0-1"]
    assert not quiet.passed
    assert [t.source_id for t in quiet.tags] == ["test-R0001-quiet-0-1"]


def test_tests_are_read_from_the_source_text_only() -> None:
    with_tests = rule(UNAME, f"tests:\n  fires:\n    - event: {cmd('uname')}\n")
    tests, doc = rule_tests(with_tests)
    assert tests is not None and doc is not None
    assert len(tests.fires) == 1
    assert rule_tests(rule(UNAME))[0] is None
    assert rule_tests(replace(with_tests, source_yaml="")) == (None, None)


def test_with_rules_loads_the_named_rules_beside_and_ignores_their_tags() -> None:
    tests = f"tests:\n  with_rules: [R0002]\n  quiet:\n    - event: {cmd('whoami')}\n"
    report = run_rule_tests([rule(UNAME, tests), rule(WHOAMI)])
    assert report.ok
    [missing] = run_rule_tests([rule(UNAME, tests)]).failures
    assert missing.reason == "needs rule(s) R0002, not loaded"
