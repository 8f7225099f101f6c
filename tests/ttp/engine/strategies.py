"""Hypothesis strategies: Python regexes, rule sets, states and events."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import strategies as st

from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.regex import compile_search
from decnet.ttp.store.base import RuleState, StateName

#: Characters where Python `re` and RE2 disagree unless translated with care.
TEXT_ALPHABET = list("aAbBkK09_ -.;/|é\n\t\r\x0b\x1c$\\\u017f\u212a\u0663\u0131")

LITERALS = ["a", "b", "A", "B", "k", "0", "9", "_", " ", "-", "é", "\u017f", "/", ";",
            r"\.", r"\n", r"\t", r"\x0b", r"\\", r"\$", r"\x1c", r"\u212a"]
CLASSES = [".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "[ab]", "[^ab]", "[a-c]",
           r"[^\s]", r"[\d_]", "[A-Z]", r"[\S\n]", r"[\W\d]", "[^a-z]", "[é-\u017f]", "[k]"]
ANCHORS = ["^", "$", r"\A", r"\Z", r"\b", r"\B"]
FALLBACK = ["(?=a)", "(?<!b)", "(?!a)", "(a)\\1", "(?<=a)"]
GROUPS = ["(?:{})", "({})", "(?i:{})", "(?m:{})", "(?s:{})", "(?-i:{})"]
QUANTIFIERS = ["*", "+", "?", "{0,2}", "{2}", "*?", "+?", "{1,}"]


@functools.cache
def regexes(fallback: bool = False) -> st.SearchStrategy[str]:
    atoms = st.sampled_from(LITERALS + CLASSES)
    base = st.one_of(atoms, st.sampled_from(ANCHORS),
                     *([st.sampled_from(FALLBACK)] if fallback else []))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(inner, min_size=1, max_size=4).map("".join),
            st.tuples(inner, inner).map("|".join),
            st.tuples(st.sampled_from(GROUPS), inner).map(lambda t: t[0].format(t[1])),
            st.tuples(inner, st.sampled_from(QUANTIFIERS))
            .map(lambda t: "(?:" + t[0] + ")" + t[1]),
            st.tuples(atoms, st.sampled_from(QUANTIFIERS)).map("".join),
        )

    return st.recursive(base, extend, max_leaves=8).filter(_valid)


def _valid(pattern: str) -> bool:
    """Valid for Python, and loadable both ways (a case-insensitive backreference is not)."""
    try:
        compile_search(pattern)
        compile_search(pattern, ignore_case=True)
    except re.error:
        return False
    return True


@functools.cache
def texts(max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(alphabet=st.sampled_from(TEXT_ALPHABET), max_size=max_size)


KINDS = ["command", "http_request", "auth_attempt"]
FIELDS = ["command_text", "raw_url", "username", "user", "headers.user_agent", "src"]
WORDS = ["wget", "curl", "admin", "root", "x", "ab", "é", "WGET", "", "/tmp"]


@functools.cache
def leaf_specs(fallback: bool) -> st.SearchStrategy[dict[str, Any]]:
    modifiers = st.fixed_dictionaries({}, optional={
        "field": st.sampled_from(FIELDS), "case_insensitive": st.booleans()})
    operator = st.one_of(
        st.builds(lambda p: {"pattern": p}, regexes(fallback).filter(bool)),
        st.builds(lambda w: {"contains": w}, st.sampled_from(WORDS).filter(bool)),
        st.builds(lambda w: {"startswith": w}, st.sampled_from(WORDS).filter(bool)),
        st.builds(lambda w: {"endswith": w}, st.sampled_from(WORDS).filter(bool)),
        st.builds(lambda w: {"equals": w}, st.sampled_from(WORDS)),
        st.builds(lambda ws: {"in": ws}, st.lists(st.sampled_from(WORDS), min_size=1,
                                                   max_size=3)),
    )
    return st.builds(lambda op, mods: {**op, **mods}, operator, modifiers)


@functools.cache
def match_specs(fallback: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    def extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.one_of(
            st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda c: {"not": c}, inner),
            st.builds(lambda a, b: {**a, **{k: v for k, v in b.items()
                                            if k in ("all", "any", "not")}}, inner, inner),
        )

    return st.recursive(leaf_specs(fallback), extend, max_leaves=5)


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@functools.cache
def states() -> st.SearchStrategy[RuleState]:
    expiry = st.sampled_from([None, NOW - timedelta(hours=1), NOW + timedelta(days=3650)])
    return st.one_of(
        st.just(RuleState()),
        st.builds(lambda e: RuleState(StateName.DISABLED, expires_at=e), expiry),
        st.builds(lambda c, e: RuleState(StateName.CLIPPED, confidence_max=c, expires_at=e),
                  st.sampled_from([0.0, 0.3, 0.8, 1.0]), expiry),
        st.builds(lambda e: RuleState(StateName.ENABLED, expires_at=e), expiry),
    )


def make_rule(rule_id: str, match: dict[str, Any], applies_to: list[str],
              *, version: int = 1, state: RuleState | None = None,
              confidences: tuple[float, ...] = (0.7,),
              evidence_fields: tuple[str, ...] = ("command_text",)) -> CompiledRule:
    doc = {
        "rule_id": rule_id, "rule_version": version, "name": f"rule_{rule_id.lower()}",
        "applies_to": applies_to, "match": match,
        "emits": [{"tactic": "TA0007", "technique_id": "T1082", "confidence": c}
                  for c in confidences[:1]]
        + [{"tactic": "TA0004", "technique_id": "T1548", "sub_technique_id": "T1548.001",
            "confidence": c} for c in confidences[1:2]],
        "evidence_fields": list(evidence_fields),
    }
    rule = compile_rule(yaml.safe_dump(doc, allow_unicode=True), source=f"{rule_id}.yaml",
                        expected_rule_id=rule_id)
    return rule.with_state(state) if state is not None else rule


@st.composite
def rule_sets(draw: st.DrawFn, fallback: bool = False, max_rules: int = 6,
              ) -> list[CompiledRule]:
    count = draw(st.integers(1, max_rules))
    rules = []
    for i in range(count):
        kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=2, unique=True))
        match = draw(match_specs(fallback))
        if draw(st.integers(0, 9)) == 0:
            match = {"kind": "lifter:session"}
        rules.append(make_rule(
            f"R{i:04d}", match, kinds, version=draw(st.integers(1, 3)), state=draw(states()),
            confidences=tuple(draw(st.lists(st.sampled_from([0.2, 0.5, 0.9, 1.0]),
                                            min_size=1, max_size=2))),
            evidence_fields=tuple(draw(st.lists(st.sampled_from(FIELDS[:3]), max_size=2))),
        ))
    return rules


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    for field in ("command_text", "raw_url", "username", "user", "src", "uid", "pwd"):
        if draw(st.booleans()):
            payload[field] = draw(st.one_of(texts(), st.sampled_from(WORDS),
                                            st.integers(-5, 5)))
    if draw(st.booleans()):
        payload["headers"] = {"user_agent": draw(texts())}
    return {"source_kind": draw(st.sampled_from(KINDS)),
            "source_id": str(draw(st.integers(0, 10**6))),
            "payload": payload, "session_id": "s1"}
