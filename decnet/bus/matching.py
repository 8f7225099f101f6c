"""NATS-style subjects: validation of topics and patterns, and wildcard matching.

A topic is a non-empty sequence of non-empty tokens separated by `.`. A pattern may
also use two wildcards, each as a whole token: `*` matches exactly one token, `>`
(last token only) matches one or more remaining tokens. Publish topics never carry
wildcards. Whitespace and control characters are refused everywhere: they would
break the NATS wire protocol or let a value smuggle in a second subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from decnet.bus.errors import InvalidTopicError

SEPARATOR: Final = "."
ONE: Final = "*"
REST: Final = ">"


def _check_common(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidTopicError(f"empty {what}")
    for char in value:
        if char.isspace() or not char.isprintable():
            raise InvalidTopicError(
                f"invalid {what} {value!r}: whitespace or control character {char!r}"
            )
    return value


def _split(value: str, what: str) -> tuple[str, ...]:
    tokens = tuple(value.split(SEPARATOR))
    if any(not token for token in tokens):
        raise InvalidTopicError(
            f"invalid {what} {value!r}: empty token (leading, trailing or doubled {SEPARATOR!r})"
        )
    return tokens


def topic_tokens(topic: str) -> tuple[str, ...]:
    """The tokens of a publish topic; raises `InvalidTopicError` (a ValueError) if invalid."""
    _check_common(topic, "topic")
    if ONE in topic or REST in topic:
        raise InvalidTopicError(
            f"invalid topic {topic!r}: wildcards ({ONE!r}, {REST!r}) are not allowed "
            "in a publish topic"
        )
    return _split(topic, "topic")


def pattern_tokens(pattern: str) -> tuple[str, ...]:
    """The tokens of a subscription pattern; raises `InvalidTopicError` if invalid."""
    _check_common(pattern, "pattern")
    tokens = _split(pattern, "pattern")
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        if token in (ONE, REST):
            if token == REST and index != last:
                raise InvalidTopicError(
                    f"invalid pattern {pattern!r}: {REST!r} is only allowed as the last token"
                )
        elif ONE in token or REST in token:
            raise InvalidTopicError(
                f"invalid pattern {pattern!r}: wildcard inside token {token!r} "
                f"({ONE!r} and {REST!r} must be whole tokens)"
            )
    return tokens


def validate_topic(topic: str) -> str:
    """Return `topic` if it is a valid publish topic, else raise `InvalidTopicError`."""
    topic_tokens(topic)
    return topic


def validate_pattern(pattern: str) -> str:
    """Return `pattern` if it is a valid subscription pattern, else raise `InvalidTopicError`."""
    pattern_tokens(pattern)
    return pattern


def match_tokens(pattern: Sequence[str], topic: Sequence[str]) -> bool:
    """Match already-validated tokens (see `pattern_tokens`, `topic_tokens`)."""
    for index, token in enumerate(pattern):
        if token == REST:
            return len(topic) > index
        if index >= len(topic):
            return False
        if token != ONE and token != topic[index]:
            return False
    return len(topic) == len(pattern)


def matches(pattern: str, topic: str) -> bool:
    """Whether `topic` matches `pattern`; both are validated first."""
    return match_tokens(pattern_tokens(pattern), topic_tokens(topic))


def pattern_covers(outer: str, inner: str) -> bool:
    """Whether every topic matched by pattern `inner` is also matched by pattern `outer`."""
    outer_tokens = pattern_tokens(outer)
    inner_tokens = pattern_tokens(inner)
    for index, token in enumerate(outer_tokens):
        if index >= len(inner_tokens):
            return False
        if token == REST:
            return True
        candidate = inner_tokens[index]
        if candidate == REST:
            return False
        if token != ONE and token != candidate:
            return False
    return len(inner_tokens) == len(outer_tokens)
