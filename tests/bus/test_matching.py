from __future__ import annotations

import itertools

import pytest

from decnet.bus.errors import BusError, InvalidTopicError
from decnet.bus.matching import (
    match_tokens,
    matches,
    pattern_covers,
    pattern_tokens,
    topic_tokens,
    validate_pattern,
    validate_topic,
)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("ttp.rule.state.R1", "ttp.rule.state.R1", True),
        ("ttp.rule.state.R1", "ttp.rule.state.R2", False),
        ("ttp.rule.state.*", "ttp.rule.state.R1", True),
        ("ttp.rule.state.*", "ttp.rule.state", False),
        ("ttp.rule.state.*", "ttp.rule.state.R1.x", False),
        ("ttp.*.state.R1", "ttp.rule.state.R1", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("ttp.rule.>", "ttp.rule.state.R1", True),
        ("ttp.rule.>", "ttp.rule.reloaded.R1", True),
        ("ttp.rule.>", "ttp.rule.x", True),
        ("ttp.rule.>", "ttp.rule", False),
        ("ttp.rule.>", "ttp.rules.x", False),
        (">", "a", True),
        (">", "a.b.c", True),
        ("*.>", "a", False),
        ("*.>", "a.b", True),
        ("a.b", "a", False),
        ("a", "a.b", False),
    ],
)
def test_matches(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("", "empty topic"),
        (".a", "empty token"),
        ("a.", "empty token"),
        ("a..b", "empty token"),
        ("a.*", "wildcards"),
        ("a.>", "wildcards"),
        ("a.b*", "wildcards"),
        ("a b", "whitespace"),
        ("a.b\r\nPUB x 1", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\x00b", "control"),
    ],
)
def test_invalid_topics(topic: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        validate_topic(topic)
    assert isinstance(info.value, InvalidTopicError)
    assert isinstance(info.value, BusError)
    assert repr(topic) in str(info.value) or topic == ""


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty pattern"),
        ("a..b", "empty token"),
        ("a.>.b", "only allowed as the last token"),
        (">.a", "only allowed as the last token"),
        ("a.b*", "wildcard inside token"),
        ("a.>b", "wildcard inside token"),
        ("a .b", "whitespace"),
    ],
)
def test_invalid_patterns(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidTopicError, match=reason):
        validate_pattern(pattern)


def test_non_strings_are_type_errors() -> None:
    with pytest.raises(TypeError):
        validate_topic(b"a.b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        validate_pattern(None)  # type: ignore[arg-type]


def test_valid_values_are_returned() -> None:
    assert validate_topic("ttp.rule.state.R_1") == "ttp.rule.state.R_1"
    assert validate_pattern("ttp.*.state.>") == "ttp.*.state.>"
    assert topic_tokens("a.b") == ("a", "b")
    assert pattern_tokens("a.*.>") == ("a", "*", ">")
    assert matches("dé.*", "dé.x")  # non-ASCII tokens are fine


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("ttp.rule.>", "ttp.rule.>", True),
        ("ttp.rule.>", "ttp.rule.state.*", True),
        ("ttp.rule.>", "ttp.rule.state.R1", True),
        ("ttp.rule.>", "ttp.rule.*", True),
        ("ttp.rule.>", "ttp.*.state.R1", False),
        ("ttp.rule.>", "ttp.>", False),
        ("ttp.rule.>", ">", False),
        ("ttp.rule.>", "ttp.rule", False),
        ("a.*", "a.>", False),
        ("a.*", "a.*", True),
        ("a.*", "a.b", True),
        ("a.b", "a.*", False),
    ],
)
def test_pattern_covers(outer: str, inner: str, expected: bool) -> None:
    assert pattern_covers(outer, inner) is expected


def _all_patterns(max_len: int) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for length in range(1, max_len + 1):
        for head in itertools.product("ab*", repeat=length - 1):
            for last in "ab*>":
                out.append((*head, last))
    return out


def test_pattern_covers_agrees_with_matching_exhaustively() -> None:
    # Topics over a larger alphabet than patterns, one token longer than any pattern:
    # enough for `*` and `>` to show every difference between two patterns.
    topics = [t for n in range(1, 5) for t in itertools.product("abc", repeat=n)]
    patterns = _all_patterns(3)
    for outer in patterns:
        for inner in patterns:
            inner_topics = [t for t in topics if match_tokens(inner, t)]
            expected = all(match_tokens(outer, t) for t in inner_topics)
            assert pattern_covers(".".join(outer), ".".join(inner)) is expected, (outer, inner)
