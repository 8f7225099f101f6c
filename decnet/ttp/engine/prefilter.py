"""One scan per field: combined RE2 sets over every rule's pattern leaves.

For each (source kind, field) the pattern leaves of all rules are split into
buckets (by a hash of the rule id, so a rule change touches one bucket per field);
each bucket is one `RE2::Set`. One `Set.Match` call per bucket returns exactly
which leaves match the field's text — the translation in `decnet.ttp.rules.regex`
is exact, so a hit needs no confirming regex call. A rule is a *candidate* when a
leaf of its necessary set hit (or it has no necessary set, e.g. `not:` alone or
only string operators); a candidate made of one pattern leaf is a match at once,
others evaluate their tree with the hits as leaf values.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Final

import re2
from re2 import _re2

from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.matchers import (
    AllOf,
    AnyOf,
    Getter,
    MatchNode,
    NotOf,
    PatternLeaf,
    field_getter,
)
from decnet.ttp.rules.regex import CompiledPattern, re2_options

#: Pattern leaves per bucket: bounds the time one bucket compile holds the GIL
#: (RE2::Set::Compile, about 15 us per pattern: ~8 ms here) and keeps each set's
#: DFA small; more buckets cost one more `Set.Match` call (~0.3 us) per event.
BUCKET_SIZE: Final = 512

_UNANCHORED: Final = re2._Anchor.UNANCHORED
_NO_UNSAFE: Final[frozenset[str]] = frozenset()

BucketKey = tuple[str, str, int]
Check = Callable[[Mapping[str, Any], int, "EvalContext"], bool]


class EvalContext:
    """Per-event facts a plan needs besides the hits: the fields RE2 could not read."""

    __slots__ = ("unsafe",)

    def __init__(self, unsafe: frozenset[str] | set[str]) -> None:
        self.unsafe = unsafe


@dataclass(frozen=True, slots=True, eq=False)
class RulePlan:
    """How one rule is evaluated for one source kind."""

    rule_id: str
    kind: str
    tree: MatchNode
    #: (bit, leaf) of every pattern leaf that goes into a set
    set_leaves: tuple[tuple[int, PatternLeaf], ...]
    #: bits of which at least one must hit for the rule to match; None: always evaluate
    necessary: frozenset[int] | None
    #: the tree is one set leaf: a hit is a match
    single: bool
    check: Check

    def keys(self, layout: Mapping[tuple[str, str], int]) -> frozenset[BucketKey]:
        """The buckets this plan's leaves live in, under `layout`."""
        return frozenset((self.kind, leaf.field,
                          bucket_of(self.rule_id, layout.get((self.kind, leaf.field), 1)))
                         for _bit, leaf in self.set_leaves)


def bucket_of(rule_id: str, buckets: int) -> int:
    return zlib.crc32(rule_id.encode("utf-8")) % buckets if buckets > 1 else 0


def plan_rule(rule: CompiledRule, kind: str) -> RulePlan | None:
    """The plan of `rule` for `kind`, or None when it never fires there (lifter...)."""
    tree = rule.matchers.get(kind)
    if tree is None:
        return None
    bits: dict[int, int] = {}
    set_leaves: list[tuple[int, PatternLeaf]] = []
    for leaf in tree.leaves():
        if isinstance(leaf, PatternLeaf) and not leaf.pattern.is_fallback:
            bits[id(leaf)] = len(set_leaves)
            set_leaves.append((len(set_leaves), leaf))
    necessary = _necessary(tree, bits)
    single = (isinstance(tree, PatternLeaf) and id(tree) in bits
              and not tree.pattern.input_sensitive)
    return RulePlan(rule.rule_id, kind, tree, tuple(set_leaves),
                    None if necessary is None else frozenset(necessary), single,
                    _check(tree, bits))


def _necessary(node: MatchNode, bits: Mapping[int, int]) -> set[int] | None:
    if isinstance(node, PatternLeaf):
        bit = bits.get(id(node))
        return None if bit is None else {bit}
    if isinstance(node, AnyOf):
        union: set[int] = set()
        for child in node.children:
            part = _necessary(child, bits)
            if part is None:
                return None
            union |= part
        return union
    if isinstance(node, AllOf):
        best: set[int] | None = None
        for child in node.children:
            part = _necessary(child, bits)
            if part is not None and (best is None or len(part) < len(best)):
                best = part
        return best
    return None


def _check(node: MatchNode, bits: Mapping[int, int]) -> Check:
    if isinstance(node, PatternLeaf) and id(node) in bits:
        return _leaf_check(node, bits[id(node)])
    if isinstance(node, AnyOf):
        any_parts = tuple(_check(c, bits) for c in node.children)
        return lambda p, m, c: any(part(p, m, c) for part in any_parts)
    if isinstance(node, AllOf):
        all_parts = tuple(_check(c, bits) for c in node.children)
        return lambda p, m, c: all(part(p, m, c) for part in all_parts)
    if isinstance(node, NotOf):
        inner = _check(node.child, bits)
        return lambda p, m, c: not inner(p, m, c)
    evaluate = node.evaluate
    return lambda p, m, c: evaluate(p)


def _leaf_check(leaf: PatternLeaf, bit: int) -> Check:
    field = leaf.field
    get = leaf.get
    pattern = leaf.pattern
    sensitive = pattern.input_sensitive

    def check(payload: Mapping[str, Any], mask: int, ctx: EvalContext) -> bool:
        if ctx.unsafe and field in ctx.unsafe:
            return leaf.evaluate(payload)
        if not (mask >> bit) & 1:
            return False
        if sensitive:
            text = get(payload)
            if text is not None and pattern.needs_fallback(text):
                return leaf.evaluate(payload)
        return True

    return check


@dataclass(frozen=True, slots=True, eq=False)
class Bucket:
    """One RE2 set over some rules' leaves on one field."""

    matcher: Any
    #: set index -> ((rule_id, bitmask), ...); index 0 is the always-matching sentinel
    triggers: tuple[tuple[tuple[str, int], ...], ...]
    patterns: tuple[CompiledPattern | None, ...]
    #: indices whose pattern matches the empty text (RE2 is not asked about "")
    empty_hits: tuple[int, ...]
    #: entries RE2::Set would not take, searched one by one
    extra: tuple[tuple[str, int, CompiledPattern], ...]
    rule_ids: frozenset[str]

    def match(self, data: bytes) -> Iterable[int]:
        """Indices of the leaves matching UTF-8 `data` (exact)."""
        if self.matcher is None:
            return ()
        found: list[int] = self.matcher.Match(data)
        if found and (found[0] == 0 or 0 in found):
            return found
        # The sentinel always matches: its absence means the DFA gave up (memory).
        return [i for i, p in enumerate(self.patterns) if p is not None and p.search_bytes(data)]

    def without(self, rule_ids: frozenset[str]) -> Bucket:
        """This bucket with `rule_ids`' entries dropped, its RE2 set kept (no compile):
        their patterns stay in the set and trigger nothing."""
        if self.rule_ids.isdisjoint(rule_ids):
            return self
        triggers = tuple(
            group if all(rid not in rule_ids for rid, _bits in group)
            else tuple(entry for entry in group if entry[0] not in rule_ids)
            for group in self.triggers)
        extra = tuple(entry for entry in self.extra if entry[0] not in rule_ids)
        return Bucket(self.matcher, triggers, self.patterns, self.empty_hits, extra,
                      self.rule_ids - rule_ids)


EMPTY_BUCKET: Final = Bucket(None, ((),), (None,), (), (), frozenset())


def build_bucket(entries: Iterable[tuple[str, int, PatternLeaf]]) -> Bucket:
    """A bucket over `(rule_id, bit, leaf)` entries; identical patterns share an index."""
    index_of: dict[str, int] = {}
    triggers: list[list[tuple[str, int]]] = [[]]
    patterns: list[CompiledPattern | None] = [None]
    extra: list[tuple[str, int, CompiledPattern]] = []
    rule_ids: set[str] = set()
    matcher: Any = _re2.Set(_UNANCHORED, re2_options())
    if matcher.Add(b"") != 0:  # pragma: no cover - an empty pattern always adds
        raise RuntimeError("RE2 set rejected the sentinel")
    for rule_id, bit, leaf in entries:
        rule_ids.add(rule_id)
        source = leaf.pattern.re2_source
        assert source is not None
        index = index_of.get(source)
        if index is None:
            index = matcher.Add(source.encode("utf-8"))
            if index < 0:
                extra.append((rule_id, 1 << bit, leaf.pattern))
                continue
            index_of[source] = index
            triggers.append([])
            patterns.append(leaf.pattern)
        triggers[index].append((rule_id, 1 << bit))
    if len(patterns) == 1:
        matcher = None
    elif not matcher.Compile():
        extra.extend((rid, bits, p) for p, group in zip(patterns, triggers, strict=True)
                     if p is not None for rid, bits in group)
        matcher, triggers, patterns = None, [[]], [None]
    merged = tuple(_merge(group) for group in triggers)
    empty = tuple(i for i, p in enumerate(patterns) if p is not None and p.matches_empty)
    return Bucket(matcher, merged, tuple(patterns), empty, tuple(extra), frozenset(rule_ids))


def _merge(group: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    masks: dict[str, int] = {}
    for rule_id, bits in group:
        masks[rule_id] = masks.get(rule_id, 0) | bits
    return tuple(masks.items())


@dataclass(frozen=True, slots=True, eq=False)
class FieldIndex:
    """The buckets of one (kind, field): its main buckets (by rule id) and its patch,
    a small bucket of the rules changed since those were built (see `index`)."""

    field: str
    get: Getter
    buckets: tuple[Bucket, ...]
    patch: Bucket = EMPTY_BUCKET
    #: what an evaluation scans: the main buckets, then the patch if it holds anything
    scan: tuple[Bucket, ...] = dataclass_field(init=False)

    def __post_init__(self) -> None:
        scan = self.buckets if self.patch is EMPTY_BUCKET else (*self.buckets, self.patch)
        object.__setattr__(self, "scan", scan)


def new_field_index(field: str, buckets: int) -> FieldIndex:
    return FieldIndex(field, field_getter(field), (EMPTY_BUCKET,) * buckets)


def layout_for(counts: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """Buckets per (kind, field) for a full build: about `BUCKET_SIZE` leaves each."""
    return {key: max(1, math.ceil(n / BUCKET_SIZE)) for key, n in counts.items()}


def bucket_entries(plans: Iterable[RulePlan], layout: Mapping[tuple[str, str], int],
                   wanted: frozenset[BucketKey] | None = None,
                   ) -> dict[BucketKey, list[tuple[str, int, PatternLeaf]]]:
    """Entries of every bucket (or of the `wanted` ones) from `plans`."""
    entries: dict[BucketKey, list[tuple[str, int, PatternLeaf]]] = {}
    for plan in plans:
        for bit, leaf in plan.set_leaves:
            pair = (plan.kind, leaf.field)
            key = (plan.kind, leaf.field, bucket_of(plan.rule_id, layout.get(pair, 1)))
            if wanted is None or key in wanted:
                entries.setdefault(key, []).append((plan.rule_id, bit, leaf))
    if wanted is not None:
        for key in wanted:
            entries.setdefault(key, [])
    return entries
