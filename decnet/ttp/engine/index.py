"""The engine's index: an immutable snapshot, replaced whole on every change.

A snapshot holds every rule (with its state), each rule's plan per source kind,
and the prefilter buckets. A definition change or a deletion does not recompile
any set: the rule becomes *pending* — its stale bucket entries are ignored and
it is evaluated on its own (its tree, individually compiled RE2 programs) — until
a compaction (`compaction` + `with_rebuilt`, run in the background by the engine)
strips its entries from the main buckets (no compile) and compiles its field's
*patch*, a small bucket of the rules changed since the main buckets were built; a
full patch is folded back into them. A state change only restamps the rule. So an
apply costs O(rules) pointer copies at most and never a regex compile, a compaction
about the patch rather than the pack, and an evaluation that started on a snapshot
finishes on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from functools import partial
from types import MappingProxyType
from typing import Final

from decnet.ttp.constants import PATCH_LEAVES
from decnet.ttp.engine.prefilter import (
    EMPTY_BUCKET,
    Bucket,
    BucketKey,
    FieldIndex,
    RulePlan,
    bucket_entries,
    bucket_of,
    build_bucket,
    layout_for,
    new_field_index,
    plan_rule,
)
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.matchers import PatternLeaf
from decnet.vocabulary import RuleState, ScopedState

_EMPTY_KEYS: Final[frozenset[BucketKey]] = frozenset()
_NO_RULES: Final[frozenset[str]] = frozenset()
_NO_PLANS: Final[Mapping[str, RulePlan]] = MappingProxyType({})
#: The bucket number of a field's patch in a `BucketKey`.
PATCH: Final = -1

Entry = tuple[str, int, PatternLeaf]
Builder = Callable[[], Bucket]


def plans_of(rule: CompiledRule) -> Mapping[str, RulePlan]:
    plans = {}
    for kind in sorted(rule.applies_to):
        plan = plan_rule(rule, kind)
        if plan is not None:
            plans[kind] = plan
    return MappingProxyType(plans)


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Every rule by id, the plans, the prefilter, and the rules pending compaction.

    The dicts are never mutated once the index is made (copy on write: a change
    copies the few it touches with `dict.copy`, a C-speed copy of pointers).
    """

    rules: dict[str, CompiledRule]
    plans: dict[str, Mapping[str, RulePlan]]
    #: per kind: its fields' bucket sets
    fields: Mapping[str, tuple[FieldIndex, ...]]
    #: buckets per (kind, field); fixed between full builds
    layout: dict[tuple[str, str], int]
    #: rule ids with entries in each bucket, as the plans stand now
    members: dict[BucketKey, frozenset[str]]
    #: per kind: rules with no necessary leaf, evaluated on every event
    always: Mapping[str, frozenset[str]]
    #: rule id -> buckets its old and new entries live in
    pending: dict[str, frozenset[BucketKey]]
    #: bumped by every full build; a compaction of another generation is dropped
    generation: int = 0
    #: per (kind, field): rules whose entries live in its patch, not its main buckets
    patched: dict[tuple[str, str], frozenset[str]] = dataclass_field(default_factory=dict)

    @classmethod
    def build(cls, rules: Iterable[CompiledRule], generation: int = 0) -> RuleIndex:
        by_id = {rule.rule_id: rule for rule in rules}
        plans = {rid: plans_of(rule) for rid, rule in by_id.items()}
        counts: dict[tuple[str, str], int] = {}
        for per_kind in plans.values():
            for plan in per_kind.values():
                for _bit, leaf in plan.set_leaves:
                    pair = (plan.kind, leaf.field)
                    counts[pair] = counts.get(pair, 0) + 1
        layout = layout_for(counts)
        all_plans = [p for per_kind in plans.values() for p in per_kind.values()]
        entries = bucket_entries(all_plans, layout)
        built = {key: build_bucket(group) for key, group in entries.items()}
        members = {key: frozenset(rid for rid, _bit, _leaf in group)
                   for key, group in entries.items()}
        return cls(by_id, plans, _install({}, layout, built), layout, members,
                   _always(plans), {}, generation)

    # -- changes ----------------------------------------------------------------

    def with_rule(self, rule: CompiledRule) -> RuleIndex:
        """Add or replace a definition (with the state it carries)."""
        rule_id = rule.rule_id
        old = self.rules.get(rule_id)
        if old is not None and old.matchers is rule.matchers:
            return self.with_state(rule_id, rule.state, rule)
        new_plans = plans_of(rule)
        layout = self.layout
        for plan in new_plans.values():
            for _bit, leaf in plan.set_leaves:
                if (plan.kind, leaf.field) not in layout:
                    if layout is self.layout:
                        layout = layout.copy()
                    layout[(plan.kind, leaf.field)] = 1
        rules = self.rules.copy()
        rules[rule_id] = rule
        plans = self.plans.copy()
        plans[rule_id] = new_plans
        return self._changed(rule_id, new_plans, rules, plans, layout)

    def with_state(self, rule_id: str, state: RuleState,
                   rule: CompiledRule | None = None) -> RuleIndex:
        current = self.rules.get(rule_id)
        if current is None:
            return self
        rules = self.rules.copy()
        rules[rule_id] = rule if rule is not None else current.with_state(state)
        return replace(self, rules=rules)

    def with_scoped(self, rule_id: str, scoped: tuple[ScopedState, ...]) -> RuleIndex:
        current = self.rules.get(rule_id)
        if current is None:
            return self
        rules = self.rules.copy()
        rules[rule_id] = current.with_scoped(scoped)
        return replace(self, rules=rules)

    def without(self, rule_id: str) -> RuleIndex:
        if rule_id not in self.rules:
            return self
        rules = self.rules.copy()
        del rules[rule_id]
        plans = self.plans.copy()
        plans.pop(rule_id, None)
        return self._changed(rule_id, {}, rules, plans, self.layout)

    def _changed(self, rule_id: str, new_plans: Mapping[str, RulePlan],
                 rules: dict[str, CompiledRule], plans: dict[str, Mapping[str, RulePlan]],
                 layout: dict[tuple[str, str], int]) -> RuleIndex:
        old_keys: set[BucketKey] = set()
        for plan in self.plans.get(rule_id, {}).values():
            old_keys |= plan.keys(self.layout)
        new_keys: set[BucketKey] = set()
        for plan in new_plans.values():
            new_keys |= plan.keys(layout)
        members = self.members.copy()
        for key in old_keys - new_keys:
            members[key] = members.get(key, frozenset()) - {rule_id}
        for key in new_keys - old_keys:
            members[key] = members.get(key, frozenset()) | {rule_id}
        pending = self.pending.copy()
        pending[rule_id] = self.pending.get(rule_id, _EMPTY_KEYS) | old_keys | new_keys
        return replace(self, rules=rules, plans=plans, layout=layout, members=members,
                       always=_always_updated(self.always, rule_id, new_plans),
                       pending=pending)

    # -- compaction -------------------------------------------------------------

    def compaction(self) -> Compaction:
        """What folds the pending rules into the prefilter, bucket by bucket.

        Per (kind, field) a pending rule touches: its entries are stripped from the
        main buckets (no compile) and the field's patch — every rule changed since the
        main buckets were built — is compiled again, so a change costs about the patch,
        not the pack. A patch past `PATCH_LEAVES` is folded instead: the main buckets
        its rules live in are rebuilt and the patch emptied.
        """
        touched: dict[tuple[str, str], set[BucketKey]] = {}
        moved: dict[tuple[str, str], set[str]] = {}
        for rule_id, keys in self.pending.items():
            for key in keys:
                touched.setdefault(key[:2], set()).add(key)
                moved.setdefault(key[:2], set()).add(rule_id)
        patched = dict(self.patched)
        items: list[tuple[BucketKey, Builder]] = []
        for pair in sorted(touched):
            kind, field = pair
            rules = sorted(rid for rid in patched.get(pair, _NO_RULES) | moved[pair]
                           if self._entries_of(rid, pair))
            entries = [e for rid in rules for e in self._entries_of(rid, pair)]
            if len(entries) > PATCH_LEAVES:
                buckets = self.layout.get(pair, 1)
                folded = touched[pair] | {(kind, field, bucket_of(rid, buckets))
                                          for rid in rules}
                patched.pop(pair, None)
                items += [(key, partial(build_bucket, self._main_entries(key, _NO_RULES)))
                          for key in sorted(folded)]
                items.append(((kind, field, PATCH), partial(_empty)))
                continue
            gone = frozenset(moved[pair])
            items += [(key, partial(self._stripped, key, gone)) for key in sorted(touched[pair])]
            items.append(((kind, field, PATCH), partial(build_bucket, entries)))
            if rules:
                patched[pair] = frozenset(rules)
            else:
                patched.pop(pair, None)
        return Compaction(items, patched)

    def _entries_of(self, rule_id: str, pair: tuple[str, str]) -> list[Entry]:
        plan = self.plans.get(rule_id, _NO_PLANS).get(pair[0])
        if plan is None:
            return []
        return [(rule_id, bit, leaf) for bit, leaf in plan.set_leaves if leaf.field == pair[1]]

    def _main_entries(self, key: BucketKey, patched: frozenset[str]) -> list[Entry]:
        return [e for rid in sorted(self.members.get(key, _NO_RULES) - patched)
                for e in self._entries_of(rid, key[:2])]

    def _stripped(self, key: BucketKey, rule_ids: frozenset[str]) -> Bucket:
        kind, field, number = key
        for index in self.fields.get(kind, ()):
            if index.field == field and number < len(index.buckets):
                return index.buckets[number].without(rule_ids)
        return EMPTY_BUCKET

    def rebuild(self) -> tuple[Compaction, dict[BucketKey, Bucket]]:
        """A compaction and its buckets, built in this thread."""
        work = self.compaction()
        return work, {key: build() for key, build in work.items}

    def with_rebuilt(self, base: RuleIndex, work: Compaction,
                     built: Mapping[BucketKey, Bucket]) -> RuleIndex:
        """Install buckets of `base.compaction()`; rules changed since `base` stay pending."""
        if base.generation != self.generation:
            return self
        pending = {rid: keys for rid, keys in self.pending.items()
                   if self.plans.get(rid) is not base.plans.get(rid)}
        return replace(self, fields=_install(self.fields, self.layout, built),
                       pending=pending, patched=work.patched)


@dataclass(frozen=True, slots=True)
class Compaction:
    """The buckets one compaction builds (in order) and the patched rules it leaves."""

    items: list[tuple[BucketKey, Builder]]
    patched: dict[tuple[str, str], frozenset[str]]


def _empty() -> Bucket:
    return EMPTY_BUCKET


def _install(fields: Mapping[str, tuple[FieldIndex, ...]],
             layout: Mapping[tuple[str, str], int],
             built: Mapping[BucketKey, Bucket]) -> Mapping[str, tuple[FieldIndex, ...]]:
    by_kind: dict[str, dict[str, FieldIndex]] = {
        kind: {fi.field: fi for fi in per_kind} for kind, per_kind in fields.items()
    }
    for (kind, field, number), bucket in sorted(built.items(), key=lambda kv: kv[0]):
        per_kind = by_kind.setdefault(kind, {})
        index = per_kind.get(field)
        if index is None or len(index.buckets) != layout.get((kind, field), 1):
            index = new_field_index(field, layout.get((kind, field), 1))
        buckets = list(index.buckets)
        buckets[number] = bucket
        if number == PATCH:
            per_kind[field] = replace(index, patch=bucket)
            continue
        per_kind[field] = replace(index, buckets=tuple(buckets))
    return MappingProxyType({kind: tuple(per_kind[f] for f in sorted(per_kind))
                             for kind, per_kind in by_kind.items()})


def _always(plans: Mapping[str, Mapping[str, RulePlan]]) -> Mapping[str, frozenset[str]]:
    always: dict[str, set[str]] = {}
    for rule_id, per_kind in plans.items():
        for kind, plan in per_kind.items():
            if plan.necessary is None:
                always.setdefault(kind, set()).add(rule_id)
    return MappingProxyType({k: frozenset(v) for k, v in always.items()})


def _always_updated(always: Mapping[str, frozenset[str]], rule_id: str,
                    new_plans: Mapping[str, RulePlan]) -> Mapping[str, frozenset[str]]:
    updated = {kind: ids - {rule_id} for kind, ids in always.items()}
    for kind, plan in new_plans.items():
        if plan.necessary is None:
            updated[kind] = updated.get(kind, frozenset()) | {rule_id}
    return MappingProxyType({k: v for k, v in updated.items() if v})
