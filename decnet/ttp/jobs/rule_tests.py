"""Run the `tests:` written in rule files.

Each case runs against its rule alone, in a fresh engine, with the rule enabled whatever
its operator state: a test checks the definition, and one rule's test never depends on
what the rest of the pack does (a cross-event rule names the rules it builds on in
`with_rules`; only those join it). A `fires` case passes when the rule
tags at least one of its events (and every `expect`ed technique is among those tags); a
`quiet` case passes when the rule tags none of them. Test events are read from the rule's
source text when the tests run, so they never ride along in a `CompiledRule`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import ValidationError

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError, Tag
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.testcases import FiresCase, QuietCase, RuleTests
from decnet.ttp.rules.yaml_safe import YamlDocument, YamlProblem, parse_rule_yaml
from decnet.vocabulary import DEFAULT_STATE

CaseKind = Literal["fires", "quiet"]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one test case; `tags` are what the rule emitted for its events."""

    rule_id: str
    source: str
    line: int | None
    kind: CaseKind
    index: int
    passed: bool
    reason: str
    events: tuple[dict[str, Any], ...]
    tags: tuple[Tag, ...]
    #: single-event rules of the whole pack that matched the events (failures only)
    pack_matches: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line is not None else self.source


@dataclass(slots=True)
class TestReport:
    """Every case of every rule that has tests, and the rules that have none."""

    __test__ = False  # not a pytest class

    results: list[CaseResult] = field(default_factory=list)
    rules_tested: int = 0
    untested: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)


def rule_tests(rule: CompiledRule) -> tuple[RuleTests | None, YamlDocument | None]:
    """The rule's `tests:` block, parsed from its source text (None when it has none)."""
    if not rule.source_yaml:
        return None, None
    try:
        doc = parse_rule_yaml(rule.source_yaml)
        raw = doc.data.get("tests")
        return (RuleTests.model_validate(raw) if raw is not None else None), doc
    except (YamlProblem, ValidationError):
        # the rule compiled from this very text, so its tests validated then
        return None, None


def run_rule_tests(rules: Iterable[CompiledRule]) -> TestReport:
    """Run the tests of every rule in `rules`; the whole set explains failures."""
    ordered = sorted(rules, key=lambda r: r.rule_id)
    by_id = {r.rule_id: r for r in ordered}
    pack: list[RuleEngine] = []  # built on the first failure only
    report = TestReport()
    for rule in ordered:
        tests, doc = rule_tests(rule)
        if tests is None or doc is None or not (tests.fires or tests.quiet):
            report.untested.append(rule.rule_id)
            continue
        report.rules_tested += 1
        cases: list[tuple[CaseKind, int, FiresCase | QuietCase]] = [
            *(("fires", n, c) for n, c in enumerate(tests.fires)),
            *(("quiet", n, c) for n, c in enumerate(tests.quiet)),
        ]
        for kind, n, case in cases:
            line, _ = doc.position(["tests", kind, n])
            missing = [r for r in tests.with_rules if r not in by_id]
            if missing:
                result = _result(rule, line, kind, n, False,
                                 f"needs rule(s) {', '.join(missing)}, not loaded", [], [])
            else:
                helpers = [by_id[r] for r in tests.with_rules if r != rule.rule_id]
                result = _run_case(rule, helpers, kind, n, case, line)
            if not result.passed:
                if not pack:
                    pack.append(RuleEngine(ordered, background=False))
                result = _with_pack_matches(result, pack[0])
            report.results.append(result)
    return report


def _run_case(rule: CompiledRule, helpers: list[CompiledRule], kind: CaseKind, n: int,
              case: FiresCase | QuietCase, line: int | None) -> CaseResult:
    alone = RuleEngine([r.with_state(DEFAULT_STATE) for r in (rule, *helpers)],
                       background=False)
    events: list[dict[str, Any]] = []
    tags: list[Tag] = []
    sequence = case.sequence is not None
    for i, test_event in enumerate(case.events):
        name = f"test-{rule.rule_id}-{kind}-{n}" + (f"-{i}" if sequence else "")
        event = test_event.as_event(name)
        events.append(event)
        try:
            tags.extend(t for t in alone.evaluate(Event.from_mapping(event))
                        if t.rule_id == rule.rule_id)
        except EventError as exc:
            return _result(rule, line, kind, n, False, f"bad event: {exc}", events, tags)
    if kind == "quiet":
        passed = not tags
        reason = "passed" if passed else "fired on an event it must leave alone"
    elif not tags:
        passed = False
        reason = "did not fire"
        if rule.lifter is not None:
            reason += f" (a lifter:{rule.lifter} rule)"
    else:
        seen = {t for tag in tags for t in (tag.technique_id, tag.sub_technique_id) if t}
        missing = [t for t in getattr(case, "expect", ()) if t not in seen]
        passed = not missing
        reason = "passed" if passed else f"fired without expected {', '.join(missing)}"
    return _result(rule, line, kind, n, passed, reason, events, tags)


def _result(rule: CompiledRule, line: int | None, kind: CaseKind, n: int, passed: bool,
            reason: str, events: list[dict[str, Any]], tags: list[Tag]) -> CaseResult:
    return CaseResult(rule.rule_id, rule.source_path or rule.rule_id, line, kind, n, passed,
                      reason, tuple(events), tuple(tags))


def _with_pack_matches(result: CaseResult, pack: RuleEngine) -> CaseResult:
    matched: set[str] = set()
    for event in result.events:
        try:
            matched.update(t.rule_id for t in pack.match(event))
        except EventError:
            continue
    return replace(result, pack_matches=tuple(sorted(matched)))
