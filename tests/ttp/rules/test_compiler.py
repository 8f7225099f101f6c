"""Rule validation: every problem named with file, line, field and reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from decnet.ttp.errors import RuleError, RuleSetError
from decnet.ttp.rules.compiled import CompiledRule, Emit
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import RuleState, StateName

GOOD = """\
rule_id: R0015
rule_version: 1
name: suid_search
description: find invocation looking for SUID binaries
applies_to: [command]
match:
  pattern: '\\bfind\\s+\\S+.*-perm\\s+(-u=s|-4000|/4000)\\b'
  field: command_text
emits:
  - {tactic: TA0007, technique_id: T1083, confidence: 0.85}
  - {tactic: TA0004, technique_id: T1548, sub_technique_id: T1548.001, confidence: 0.95}
evidence_fields: [command_id]
last_reviewed: "2026-05-02"
next_review: "2099-08-02"
"""


def errors_of(text: str, expected_rule_id: str | None = "R0015") -> list[RuleError]:
    with pytest.raises(RuleSetError) as caught:
        compile_rule(text, source="rules/R0015.yaml", expected_rule_id=expected_rule_id)
    return list(caught.value.errors)


def only_error(text: str) -> RuleError:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


def test_the_design_example_compiles() -> None:
    rule = compile_rule(GOOD, source="rules/R0015.yaml", expected_rule_id="R0015")
    assert isinstance(rule, CompiledRule)
    assert rule.rule_id == "R0015" and rule.rule_version == 1
    assert rule.applies_to == frozenset({"command"})
    assert rule.emits == (Emit("T1083", None, "TA0007", 0.85),
                          Emit("T1548", "T1548.001", "TA0004", 0.95))
    assert rule.evidence_fields == ("command_id",)
    assert rule.state == RuleState()
    assert rule.warnings == ()
    assert rule.matchers["command"]({"command_text": "find / -perm -4000 -type f"})
    assert not rule.matchers["command"]({"command_text": "find . -name '*.py'"})


def test_compiled_rules_are_immutable() -> None:
    rule = compile_rule(GOOD, source="R0015.yaml")
    with pytest.raises(AttributeError):
        rule.rule_version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        rule.match_spec["pattern"] = "x"  # type: ignore[index]
    assert isinstance(rule.emits, tuple) and isinstance(rule.applies_to, frozenset)


def test_state_is_stamped_on_a_new_value() -> None:
    rule = compile_rule(GOOD, source="R0015.yaml")
    disabled = rule.with_state(RuleState(StateName.DISABLED))
    assert disabled.state.state is StateName.DISABLED
    assert rule.state == RuleState()
    assert disabled == rule.with_state(RuleState(StateName.DISABLED))


def test_compiled_rules_are_not_pickled() -> None:
    import pickle

    with pytest.raises(TypeError, match="source_yaml"):
        pickle.dumps(compile_rule(GOOD, source="R0015.yaml"))


def test_unknown_top_level_key_is_rejected_with_hint() -> None:
    error = only_error(GOOD.replace("emits:", "emits:\n  - {tactic: TA0007, technique_id: "
                                    "T1083, confidence: 0.1}\nemit:", 1))
    assert error.field == "emit"
    assert "unknown key 'emit'" in error.reason and "emits" in error.reason
    assert error.file == "rules/R0015.yaml"
    assert error.line is not None


def test_rule_id_must_equal_the_file_stem() -> None:
    error = errors_of(GOOD, expected_rule_id="R0016")[0]
    assert error.field == "rule_id" and error.line == 1
    assert "R0016" in error.reason


@pytest.mark.parametrize("bad_id", ["R-1", "R 1", "R1.*", "x" * 65, "../x"])
def test_rule_id_shape(bad_id: str) -> None:
    errors = errors_of(GOOD.replace("rule_id: R0015", f"rule_id: '{bad_id}'"), None)
    assert errors[0].field == "rule_id"


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ("tactic: TA0007", "tactic: TA9999", "emits.0.tactic", "not an enterprise"),
        ("tactic: TA0007", "tactic: discovery", "emits.0.tactic", "TA####"),
        ("technique_id: T1083", "technique_id: T10830", "emits.0.technique_id", "T####"),
        ("sub_technique_id: T1548.001", "sub_technique_id: T1547.001", "emits.1",
         "not under technique T1548"),
        ("sub_technique_id: T1548.001", "sub_technique_id: T1548.1", "emits.1", "T####.###"),
        ("confidence: 0.85", "confidence: 1.5", "emits.0.confidence", "less than or equal"),
        ("confidence: 0.85", "confidence: -0.1", "emits.0.confidence", "greater than"),
        ("confidence: 0.85", "confidence: true", "emits.0.confidence", "number"),
        ("confidence: 0.85", "confidence: .nan", "emits.0.confidence", "finite"),
        ("rule_version: 1", "rule_version: '1'", "rule_version", "integer"),
        ("rule_version: 1", "rule_version: 0", "rule_version", "greater than"),
        ("applies_to: [command]", "applies_to: [Shell-1]", "applies_to", "a-z0-9_"),
        ("applies_to: [command]", "applies_to: []", "applies_to", "at least 1"),
        ("last_reviewed: \"2026-05-02\"", "last_reviewed: soon", "last_reviewed", "date"),
    ],
)
def test_field_validation(old: str, new: str, field: str, reason: str) -> None:
    assert old in GOOD
    error = only_error(GOOD.replace(old, new, 1))
    assert error.field == field
    assert reason in error.reason
    assert error.line is not None


def test_bad_regex_is_a_load_time_error_with_position() -> None:
    error = only_error(GOOD.replace("(-u=s", "((-u=s"))
    assert error.field == "match.pattern"
    assert error.reason.startswith("bad regex")
    assert error.line == 7


def test_unknown_match_key_is_rejected() -> None:
    error = only_error(GOOD.replace("  field: command_text", "  feild: command_text"))
    assert error.field == "match.feild" and "unknown match key" in error.reason


def test_every_error_of_a_file_is_reported() -> None:
    text = GOOD.replace("TA0007", "TA9999").replace("1.0", "x").replace(
        "confidence: 0.95", "confidence: 2").replace("name: suid_search\n", "")
    fields = {e.field for e in errors_of(text)}
    assert {"name", "emits.0.tactic", "emits.1.confidence"} <= fields


def test_missing_required_keys_are_named() -> None:
    fields = {e.field for e in errors_of("rule_id: R0015\n")}
    assert fields == {"rule_version", "name", "applies_to", "match", "emits"}


def test_review_metadata_is_kept_and_a_past_next_review_warns() -> None:
    text = GOOD.replace("2099-08-02", "2026-08-02") + (
        "author: alice\nreferences: [https://attack.mitre.org/techniques/T1083/]\n")
    rule = compile_rule(text, source="R0015.yaml", today=datetime(2026, 11, 25, tzinfo=UTC))
    assert rule.review.author == "alice"
    assert rule.review.references == ("https://attack.mitre.org/techniques/T1083/",)
    assert rule.warnings == ("next_review 2026-08-02 is in the past",)


def test_references_must_be_urls() -> None:
    error = only_error(GOOD + "references: [not a url]\n")
    assert error.field == "references"


def test_lifter_rules_are_kept_without_matchers() -> None:
    text = GOOD.replace("  pattern: '\\bfind\\s+\\S+.*-perm\\s+(-u=s|-4000|/4000)\\b'\n"
                        "  field: command_text\n", "  kind: lifter:brute_force\n")
    rule = compile_rule(text, source="R0015.yaml")
    assert rule.is_lifter and rule.lifter == "brute_force"
    assert dict(rule.matchers) == {}


def test_error_messages_read_well() -> None:
    error = only_error(GOOD.replace("tactic: TA0007", "tactic: TA9999"))
    assert str(error).startswith("rules/R0015.yaml:10:14 ")
    assert "[emits.0.tactic]" in str(error)
