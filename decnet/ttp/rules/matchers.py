"""Compile a rule's `match` block into predicates over an event payload."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from decnet.ttp.rules.regex import compile_search

Matcher = Callable[[Mapping[str, Any]], bool]

STRING_OPERATORS: Final = ("contains", "startswith", "endswith", "equals", "in")
OPERATORS: Final = ("pattern", *STRING_OPERATORS)
COMBINATORS: Final = ("all", "any", "not")
MODIFIERS: Final = ("field", "case_insensitive")
LIFTER_PREFIX: Final = "lifter:"


class MatchSpecError(Exception):
    """A `match` block that cannot be compiled; `path` locates the key inside `match`."""

    def __init__(self, reason: str, path: Sequence[str | int] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = tuple(path)


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    """The compiled form of a `match` block for one default field."""

    matcher: Matcher
    warnings: tuple[str, ...]


def lifter_name(spec: Mapping[str, Any]) -> str | None:
    """The lifter a rule delegates to (`match.kind: lifter:<name>`), else None."""
    kind = spec.get("kind")
    if isinstance(kind, str) and kind.startswith(LIFTER_PREFIX):
        return kind[len(LIFTER_PREFIX):]
    return None


def field_getter(field: str) -> Callable[[Mapping[str, Any]], str | None]:
    """Read `field` from a payload as text; dotted names reach into nested mappings."""
    parts = tuple(field.split("."))

    def get(payload: Mapping[str, Any]) -> str | None:
        value: Any = payload.get(field)
        if value is None and len(parts) > 1:
            value = payload
            for part in parts:
                if not isinstance(value, Mapping):
                    return None
                value = value.get(part)
        return as_text(value)

    return get


def as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def compile_match(spec: Mapping[str, Any], default_field: str) -> CompiledMatch:
    """Compile `spec` (not a lifter) into one predicate; raises `MatchSpecError`."""
    warnings: list[str] = []
    matcher = _compile_node(spec, (), default_field, False, warnings)
    return CompiledMatch(matcher=matcher, warnings=tuple(warnings))


def _compile_node(
    node: Any, path: tuple[str | int, ...], field: str, folded: bool, warnings: list[str]
) -> Matcher:
    if not isinstance(node, Mapping):
        raise MatchSpecError("a match condition must be a mapping", path)
    known = (*OPERATORS, *COMBINATORS, *MODIFIERS)
    for key in node:
        if key not in known:
            raise MatchSpecError(
                f"unknown match key {key!r}; known: {', '.join(known)}", (*path, str(key))
            )
    if "field" in node:
        field = node["field"]
        if not isinstance(field, str) or not field:
            raise MatchSpecError("field must be a non-empty string", (*path, "field"))
    if "case_insensitive" in node:
        folded = node["case_insensitive"]
        if not isinstance(folded, bool):
            raise MatchSpecError("case_insensitive must be true or false",
                                 (*path, "case_insensitive"))
    parts: list[Matcher] = []
    for op in OPERATORS:
        if op in node:
            parts.append(_compile_leaf(op, node[op], (*path, op), field, folded, warnings))
    if "all" in node or "any" in node:
        for op in ("all", "any"):
            if op not in node:
                continue
            children = node[op]
            if not isinstance(children, list) or not children:
                raise MatchSpecError(f"{op} takes a non-empty list of conditions", (*path, op))
            compiled = tuple(
                _compile_node(c, (*path, op, i), field, folded, warnings)
                for i, c in enumerate(children)
            )
            parts.append(_all_of(compiled) if op == "all" else _any_of(compiled))
    if "not" in node:
        inner = _compile_node(node["not"], (*path, "not"), field, folded, warnings)
        parts.append(lambda payload: not inner(payload))
    if not parts:
        raise MatchSpecError(
            f"no condition: give one of {', '.join(OPERATORS + COMBINATORS)}", path
        )
    return parts[0] if len(parts) == 1 else _all_of(tuple(parts))


def _all_of(parts: tuple[Matcher, ...]) -> Matcher:
    return lambda payload: all(p(payload) for p in parts)


def _any_of(parts: tuple[Matcher, ...]) -> Matcher:
    return lambda payload: any(p(payload) for p in parts)


def _compile_leaf(
    op: str, arg: Any, path: tuple[str | int, ...], field: str, folded: bool,
    warnings: list[str],
) -> Matcher:
    get = field_getter(field)
    if op == "pattern":
        if not isinstance(arg, str) or not arg:
            raise MatchSpecError("pattern must be a non-empty string", path)
        try:
            compiled = compile_search(arg, ignore_case=folded)
        except re.error as exc:
            raise MatchSpecError(f"bad regex: {exc}", path) from None
        if compiled.warning:
            warnings.append(compiled.warning)
        search = compiled.search

        def by_pattern(payload: Mapping[str, Any]) -> bool:
            text = get(payload)
            return text is not None and search(text)

        return by_pattern
    needles = _needles(op, arg, path)
    if folded:
        needles = tuple(n.casefold() for n in needles)
    test = _string_test(op, needles)

    def by_text(payload: Mapping[str, Any]) -> bool:
        text = get(payload)
        if text is None:
            return False
        return test(text.casefold() if folded else text)

    return by_text


def _needles(op: str, arg: Any, path: tuple[str | int, ...]) -> tuple[str, ...]:
    if op == "in":
        if not isinstance(arg, list) or not arg:
            raise MatchSpecError("in takes a non-empty list of values", path)
        values = arg
    else:
        values = [arg]
    needles: list[str] = []
    for value in values:
        text = as_text(value)
        if text is None or (op != "equals" and op != "in" and not text):
            raise MatchSpecError(f"{op} takes a non-empty string", path)
        needles.append(text)
    return tuple(needles)


def _string_test(op: str, needles: tuple[str, ...]) -> Callable[[str], bool]:
    if op == "contains":
        needle = needles[0]
        return lambda text: needle in text
    if op == "startswith":
        return lambda text: text.startswith(needles[0])
    if op == "endswith":
        return lambda text: text.endswith(needles[0])
    choices = frozenset(needles)
    return lambda text: text in choices
