"""The `match` operators: each compiled at load, exact, and errors named at load."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from decnet.ttp.errors import RuleSetError
from decnet.ttp.rules.matchers import (
    AllOf,
    AnyOf,
    MatchSpecError,
    NotOf,
    PatternLeaf,
    TextLeaf,
    compile_match,
)
from tests.ttp.engine.strategies import make_rule


def matches(spec: dict[str, Any], payload: dict[str, Any],
            default_field: str = "command_text") -> bool:
    return compile_match(spec, default_field).matcher(payload)


@pytest.mark.parametrize(("spec", "text", "expected"), [
    ({"pattern": r"\bwget\s+http"}, "cd /tmp; wget http://x/y", True),
    ({"pattern": r"\bwget\s+http"}, "echo wgetter http", False),
    ({"contains": "/etc/shadow"}, "cat /etc/shadow", True),
    ({"contains": "/etc/shadow"}, "cat /etc/passwd", False),
    ({"startswith": "sudo "}, "sudo -i", True),
    ({"startswith": "sudo "}, "echo sudo x", False),
    ({"endswith": "| sh"}, "curl x | sh", True),
    ({"endswith": "| sh"}, "curl x | shx", False),
    ({"equals": "id"}, "id", True),
    ({"equals": "id"}, "id -a", False),
    ({"in": ["admin", "root"]}, "root", True),
    ({"in": ["admin", "root"]}, "rooted", False),
    ({"in": [0, 1]}, "1", True),
    ({"equals": "ROOT", "case_insensitive": True}, "root", True),
    ({"contains": "STRASSE", "case_insensitive": True}, "straße", True),  # casefold
    ({"pattern": "WGET", "case_insensitive": True}, "wget", True),
    ({"pattern": "WGET"}, "wget", False),
])
def test_each_operator(spec: dict[str, Any], text: str, expected: bool) -> None:
    assert matches(spec, {"command_text": text}) is expected


def test_combinators() -> None:
    spec = {"all": [{"contains": "curl"},
                    {"any": [{"contains": "| sh"}, {"contains": "| bash"}]},
                    {"not": {"contains": "localhost"}}]}
    assert matches(spec, {"command_text": "curl http://x | bash"})
    assert not matches(spec, {"command_text": "curl http://localhost | bash"})
    assert not matches(spec, {"command_text": "curl http://x > f"})
    tree = compile_match(spec, "command_text").matcher
    assert isinstance(tree, AllOf) and isinstance(tree.children[1], AnyOf)
    assert isinstance(tree.children[2], NotOf)


def test_operators_side_by_side_all_hold() -> None:
    spec = {"contains": "wget", "pattern": r"\.sh\b"}
    assert matches(spec, {"command_text": "wget x.sh"})
    assert not matches(spec, {"command_text": "wget x.py"})


def test_field_and_case_insensitive_are_inherited_and_overridden() -> None:
    spec = {"field": "user", "case_insensitive": True,
            "all": [{"equals": "ROOT"}, {"contains": "x", "field": "command_text",
                                         "case_insensitive": False}]}
    assert matches(spec, {"user": "root", "command_text": "x"})
    assert not matches(spec, {"user": "root", "command_text": "X"})
    leaves = list(compile_match(spec, "command_text").matcher.leaves())
    assert [leaf.field for leaf in leaves] == ["user", "command_text"]


def test_nested_fields() -> None:
    spec = {"pattern": "(?i)sqlmap", "field": "headers.user_agent"}
    assert matches(spec, {"headers": {"user_agent": "sqlmap/1.7"}}, "raw_url")
    assert not matches(spec, {"headers": {"user_agent": "curl/8"}}, "raw_url")
    assert not matches(spec, {"headers": "sqlmap"}, "raw_url")
    assert not matches(spec, {}, "raw_url")
    # a literal dotted key wins over the nested path
    assert matches(spec, {"headers.user_agent": "SQLMAP"}, "raw_url")


def test_missing_or_non_text_fields_never_match() -> None:
    assert not matches({"contains": "a"}, {})
    assert not matches({"pattern": "."}, {"command_text": None})
    assert not matches({"pattern": "."}, {"command_text": ["a"]})
    assert matches({"equals": "5"}, {"command_text": 5})
    assert matches({"equals": "true"}, {"command_text": True})
    assert matches({"not": {"contains": "a"}}, {})


def test_default_field_per_kind() -> None:
    rule = make_rule("R0001", {"contains": "admin"}, ["command", "auth_attempt"])
    assert rule.matchers["command"]({"command_text": "admin"})
    assert not rule.matchers["command"]({"username": "admin"})
    assert rule.matchers["auth_attempt"]({"username": "admin"})


@pytest.mark.parametrize(("spec", "key"), [
    ({"contain": "x"}, "contain"),
    ({"all": [{"pattern": "a"}, {"regex": "b"}]}, "regex"),
    ({"not": {"starts_with": "x"}}, "starts_with"),
])
def test_unknown_operators_are_load_errors_naming_rule_and_key(
        spec: dict[str, Any], key: str) -> None:
    with pytest.raises(RuleSetError) as caught:
        make_rule("R0042", spec, ["command"])
    (error,) = caught.value.errors
    text = str(error)
    assert "R0042" in text and repr(key) in text
    assert error.field is not None and error.field.endswith(key)


@pytest.mark.parametrize(("spec", "reason"), [
    ({"pattern": "a("}, "bad regex"),
    ({"pattern": ""}, "non-empty"),
    ({"contains": ""}, "non-empty"),
    ({"in": []}, "non-empty list"),
    ({"all": []}, "non-empty list"),
    ({"field": "user"}, "no condition"),
    ({"contains": "a", "case_insensitive": "yes"}, "true or false"),
    ({"contains": "a", "field": ""}, "field"),
])
def test_bad_specs(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(MatchSpecError, match=reason):
        compile_match(spec, "command_text")


def test_fallback_pattern_warns_naming_the_rule(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        rule = make_rule("R0077", {"any": [{"pattern": r"(?<!no)wget"}, {"contains": "x"}]},
                         ["command"])
    (warning,) = rule.warnings
    assert warning.startswith("rule R0077: ")
    assert "match.any.0.pattern" in warning and "lookahead/lookbehind" in warning
    assert any("R0077" in r.getMessage() for r in caplog.records)
    assert rule.matchers["command"]({"command_text": "wget"})
    assert not rule.matchers["command"]({"command_text": "nowget"})


def test_pattern_only_rules_have_no_warnings() -> None:
    rule = make_rule("R0001", {"pattern": r"\bid\b"}, ["command"])
    assert rule.warnings == ()
    leaf = rule.matchers["command"]
    assert isinstance(leaf, PatternLeaf) and not leaf.pattern.is_fallback


def test_string_leaves_are_plain() -> None:
    leaf = compile_match({"in": ["a", "B"], "case_insensitive": True}, "f").matcher
    assert isinstance(leaf, TextLeaf) and leaf.needles == ("a", "b")
