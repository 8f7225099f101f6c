"""Compile a rule's `match` block into a predicate tree over an event payload.

A compiled match is a tree of `MatchNode`s: leaves (`PatternLeaf`, `TextLeaf`) and
combinators (`AllOf`, `AnyOf`, `NotOf`). Every node is callable on a payload and
gives the exact answer on its own; the engine also reads the tree to put the
pattern leaves into its per-field prefilter sets.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from decnet.ttp.rules.regex import CompiledPattern, compile_search

STRING_OPERATORS: Final = ("contains", "startswith", "endswith", "equals", "in")
OPERATORS: Final = ("pattern", *STRING_OPERATORS)
COMBINATORS: Final = ("all", "any", "not")
MODIFIERS: Final = ("field", "case_insensitive")
LIFTER_PREFIX: Final = "lifter:"
#: A lifter's name: it is shown on terminals and used as a key, so plain characters only.
LIFTER_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")

Getter = Callable[[Mapping[str, Any]], "str | None"]


class MatchSpecError(Exception):
    """A `match` block that cannot be compiled; `path` locates the key inside `match`."""

    def __init__(self, reason: str, path: Sequence[str | int] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = tuple(path)


class NoFieldError(MatchSpecError):
    """A condition without `field` on a source kind that has no default match field."""


class MatchNode:
    """A compiled condition; `node(payload)` is the exact answer."""

    __slots__ = ()

    def __call__(self, payload: Mapping[str, Any]) -> bool:
        return self.evaluate(payload)

    def evaluate(self, payload: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def leaves(self) -> Iterator[Leaf]:
        """Every leaf, depth first, left to right."""
        raise NotImplementedError


class Leaf(MatchNode):
    __slots__ = ("field", "get")

    def __init__(self, field: str) -> None:
        self.field = sys.intern(field)
        self.get = field_getter(self.field)

    def leaves(self) -> Iterator[Leaf]:
        yield self


class PatternLeaf(Leaf):
    """`pattern`: a regex searched in the field's text."""

    __slots__ = ("pattern",)

    def __init__(self, field: str, pattern: CompiledPattern) -> None:
        super().__init__(field)
        self.pattern = pattern

    def evaluate(self, payload: Mapping[str, Any]) -> bool:
        text = self.get(payload)
        if text is None:
            return False
        return self.pattern.search(text)


class TextLeaf(Leaf):
    """`contains`, `startswith`, `endswith`, `equals`, `in`: plain string tests."""

    __slots__ = ("folded", "needles", "op", "test")

    def __init__(self, field: str, op: str, needles: tuple[str, ...], folded: bool) -> None:
        super().__init__(field)
        self.op = op
        self.folded = folded
        self.needles = tuple(n.casefold() for n in needles) if folded else needles
        self.test = _string_test(op, self.needles)

    def evaluate(self, payload: Mapping[str, Any]) -> bool:
        text = self.get(payload)
        if text is None:
            return False
        return self.test(text.casefold() if self.folded else text)


class AllOf(MatchNode):
    __slots__ = ("children",)

    def __init__(self, children: tuple[MatchNode, ...]) -> None:
        self.children = children

    def evaluate(self, payload: Mapping[str, Any]) -> bool:
        return all(c.evaluate(payload) for c in self.children)

    def leaves(self) -> Iterator[Leaf]:
        for child in self.children:
            yield from child.leaves()


class AnyOf(AllOf):
    __slots__ = ()

    def evaluate(self, payload: Mapping[str, Any]) -> bool:
        return any(c.evaluate(payload) for c in self.children)


class NotOf(MatchNode):
    __slots__ = ("child",)

    def __init__(self, child: MatchNode) -> None:
        self.child = child

    def evaluate(self, payload: Mapping[str, Any]) -> bool:
        return not self.child.evaluate(payload)

    def leaves(self) -> Iterator[Leaf]:
        return self.child.leaves()


#: What `CompiledRule.matchers` holds per source kind: callable on a payload.
Matcher = MatchNode


@dataclass(frozen=True, slots=True)
class CompiledMatch:
    """The compiled form of a `match` block for one default field."""

    matcher: MatchNode
    warnings: tuple[str, ...]


def lifter_name(spec: Mapping[str, Any]) -> str | None:
    """The lifter a rule delegates to (`match.kind: lifter:<name>`), else None.

    An empty name is returned as `""` (the compiler reports it); a name outside
    `[A-Za-z0-9_.-]{1,64}` gives None, so the block is compiled as a match and
    `compile_match` refuses it, naming `match.kind`.
    """
    kind = spec.get("kind")
    if isinstance(kind, str) and kind.startswith(LIFTER_PREFIX):
        name = kind[len(LIFTER_PREFIX):]
        return name if not name or LIFTER_NAME_RE.fullmatch(name) else None
    return None


def _check_lifter_kind(spec: Mapping[str, Any]) -> None:
    """Refuse `match.kind: lifter:<name>` whose name `lifter_name` did not accept."""
    kind = spec.get("kind")
    if isinstance(kind, str) and kind.startswith(LIFTER_PREFIX):
        name = kind[len(LIFTER_PREFIX):]
        shown = repr(name) if len(name) <= 70 else repr(name[:70]) + "…"
        raise MatchSpecError(f"invalid lifter name {shown}: use 1 to 64 of A-Z a-z 0-9 _ . -",
                             ("kind",))


@functools.lru_cache(maxsize=4096)
def field_getter(field: str) -> Getter:
    """Read `field` from a payload as text; dotted names reach into nested mappings.

    One getter per field name, shared by every leaf that reads it (10,000 rules read
    a few dozen fields).
    """
    parts = tuple(field.split("."))
    if len(parts) == 1:
        def get_flat(payload: Mapping[str, Any]) -> str | None:
            value = payload.get(field)
            return value if type(value) is str else as_text(value)

        return get_flat

    def get(payload: Mapping[str, Any]) -> str | None:
        value: Any = payload.get(field)
        if value is None:
            value = payload
            for part in parts:
                if not isinstance(value, Mapping):
                    return None
                value = value.get(part)
        return as_text(value)

    return get


def as_text(value: Any) -> str | None:
    """A scalar as the text operators see; None for containers, other types and
    integers longer than Python writes as text (4,300 digits)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:
            return None
    return None


PatternCache = dict[tuple[str, bool], CompiledPattern]


def compile_match(spec: Mapping[str, Any], default_field: str | None, *,
                  cache: PatternCache | None = None) -> CompiledMatch:
    """Compile `spec` (not a lifter) into one predicate tree; raises `MatchSpecError`.

    `cache` shares compiled patterns between the source kinds of one rule. With no
    `default_field` every condition must name its `field` (`NoFieldError` otherwise).
    """
    if isinstance(spec, Mapping):
        _check_lifter_kind(spec)
    warnings: list[str] = []
    node = _compile_node(spec, (), default_field, False, warnings,
                         cache if cache is not None else {})
    return CompiledMatch(matcher=node, warnings=tuple(warnings))


def _compile_node(
    node: Any, path: tuple[str | int, ...], field: str | None, folded: bool,
    warnings: list[str],
    cache: PatternCache,
) -> MatchNode:
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
    parts: list[MatchNode] = []
    for op in OPERATORS:
        if op in node:
            parts.append(_compile_leaf(op, node[op], (*path, op), field, folded, warnings,
                                       cache))
    for op in ("all", "any"):
        if op not in node:
            continue
        children = node[op]
        if not isinstance(children, list | tuple) or not children:
            raise MatchSpecError(f"{op} takes a non-empty list of conditions", (*path, op))
        compiled = tuple(
            _compile_node(c, (*path, op, i), field, folded, warnings, cache)
            for i, c in enumerate(children)
        )
        parts.append(AllOf(compiled) if op == "all" else AnyOf(compiled))
    if "not" in node:
        parts.append(NotOf(_compile_node(node["not"], (*path, "not"), field, folded,
                                         warnings, cache)))
    if not parts:
        raise MatchSpecError(
            f"no condition: give one of {', '.join(OPERATORS + COMBINATORS)}", path
        )
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _compile_leaf(
    op: str, arg: Any, path: tuple[str | int, ...], field: str | None, folded: bool,
    warnings: list[str], cache: PatternCache,
) -> Leaf:
    if field is None:
        raise NoFieldError(f"{op} needs a field", path)
    if op == "pattern":
        if not isinstance(arg, str) or not arg:
            raise MatchSpecError("pattern must be a non-empty string", path)
        compiled = cache.get((arg, folded))
        if compiled is None:
            where = ".".join(str(p) for p in ("match", *path))
            try:
                compiled = compile_search(arg, ignore_case=folded, where=where)
            except re.error as exc:
                raise MatchSpecError(f"bad regex: {exc}", path) from None
            except RecursionError:
                raise MatchSpecError("bad regex: nested too deeply", path) from None
            cache[(arg, folded)] = compiled
        if compiled.warning and compiled.warning not in warnings:
            warnings.append(compiled.warning)
        return PatternLeaf(field, compiled)
    return TextLeaf(field, op, _needles(op, arg, path), folded)


def _needles(op: str, arg: Any, path: tuple[str | int, ...]) -> tuple[str, ...]:
    if op == "in":
        if not isinstance(arg, list | tuple) or not arg:
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
        first = needles[0]
        return lambda text: text.startswith(first)
    if op == "endswith":
        last = needles[0]
        return lambda text: text.endswith(last)
    choices = frozenset(needles)
    return lambda text: text in choices
