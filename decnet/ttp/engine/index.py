"""The engine's index: an immutable snapshot, replaced whole on every change.

A snapshot holds every rule (with its state), each rule's plan per source kind,
and the prefilter buckets. A definition change or a deletion does not recompile
any set: the rule becomes *pending* — its stale bucket entries are ignored and
it is evaluated on its own (its tree, individually compiled RE2 programs) — until
a compaction rebuilds the buckets it touches (`rebuild` + `with_rebuilt`, run in
the background by the engine). A state change only restamps the rule. So an
apply costs O(rules) pointer copies at most and never a regex compile, and an
evaluation that started on a snapshot finishes on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from decnet.ttp.engine.prefilter import (
    Bucket,
    BucketKey,
    FieldIndex,
    RulePlan,
    bucket_entries,
    build_bucket,
    layout_for,
    new_field_index,
    plan_rule,
)
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import RuleState, StateName

_EMPTY_KEYS: Final[frozenset[BucketKey]] = frozenset()


def may_fire(rule: CompiledRule) -> bool:
    """Whether a rule can fire at all now (a disabled state may still expire)."""
    if rule.is_lifter:
        return False
    return not (rule.state.state is StateName.DISABLED and rule.state.expires_at is None)


def plans_of(rule: CompiledRule) -> Mapping[str, RulePlan]:
    plans = {}
    for kind in sorted(rule.applies_to):
        plan = plan_rule(rule, kind)
        if plan is not None:
            plans[kind] = plan
    return MappingProxyType(plans)


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Every rule by id, the plans, the prefilter, and the rules pending compaction."""

    rules: Mapping[str, CompiledRule]
    plans: Mapping[str, Mapping[str, RulePlan]]
    #: per kind: its fields' bucket sets
    fields: Mapping[str, tuple[FieldIndex, ...]]
    #: buckets per (kind, field); fixed between full builds
    layout: Mapping[tuple[str, str], int]
    #: per kind: rules with no necessary leaf, evaluated on every event
    always: Mapping[str, frozenset[str]]
    #: rule id -> buckets its old and new entries live in
    pending: Mapping[str, frozenset[BucketKey]]
    #: bumped by every full build; a compaction of another generation is dropped
    generation: int = 0

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
        built = {key: build_bucket(entries)
                 for key, entries in bucket_entries(all_plans, layout).items()}
        fields = _install({}, layout, built)
        return cls(MappingProxyType(by_id), MappingProxyType(plans), fields,
                   MappingProxyType(layout), _always(plans), MappingProxyType({}),
                   generation)

    # -- changes ----------------------------------------------------------------

    def with_rule(self, rule: CompiledRule) -> RuleIndex:
        """Add or replace a definition (with the state it carries)."""
        rule_id = rule.rule_id
        old = self.rules.get(rule_id)
        if old is not None and old.matchers is rule.matchers and old.state != rule.state:
            return self.with_state(rule_id, rule.state, rule)
        new_plans = plans_of(rule)
        layout = dict(self.layout)
        for plan in new_plans.values():
            for _bit, leaf in plan.set_leaves:
                layout.setdefault((plan.kind, leaf.field), 1)
        keys = self._pending_keys(rule_id, new_plans, layout)
        rules = dict(self.rules)
        rules[rule_id] = rule
        plans = dict(self.plans)
        plans[rule_id] = new_plans
        pending = dict(self.pending)
        pending[rule_id] = keys
        return replace(self, rules=MappingProxyType(rules), plans=MappingProxyType(plans),
                       layout=MappingProxyType(layout),
                       always=_always_updated(self.always, rule_id, new_plans),
                       pending=MappingProxyType(pending))

    def with_state(self, rule_id: str, state: RuleState,
                   rule: CompiledRule | None = None) -> RuleIndex:
        current = self.rules.get(rule_id)
        if current is None:
            return self
        rules = dict(self.rules)
        rules[rule_id] = rule if rule is not None else current.with_state(state)
        return replace(self, rules=MappingProxyType(rules))

    def without(self, rule_id: str) -> RuleIndex:
        if rule_id not in self.rules:
            return self
        keys = self._pending_keys(rule_id, {}, self.layout)
        rules = dict(self.rules)
        del rules[rule_id]
        plans = dict(self.plans)
        plans.pop(rule_id, None)
        pending = dict(self.pending)
        pending[rule_id] = keys
        return replace(self, rules=MappingProxyType(rules), plans=MappingProxyType(plans),
                       always=_always_updated(self.always, rule_id, {}),
                       pending=MappingProxyType(pending))

    def _pending_keys(self, rule_id: str, new_plans: Mapping[str, RulePlan],
                      layout: Mapping[tuple[str, str], int]) -> frozenset[BucketKey]:
        keys = set(self.pending.get(rule_id, _EMPTY_KEYS))
        for plan in self.plans.get(rule_id, {}).values():
            keys |= plan.keys(self.layout)
        for plan in new_plans.values():
            keys |= plan.keys(layout)
        return frozenset(keys)

    # -- compaction -------------------------------------------------------------

    def dirty(self) -> frozenset[BucketKey]:
        keys: set[BucketKey] = set()
        for bucket_keys in self.pending.values():
            keys |= bucket_keys
        return frozenset(keys)

    def rebuild(self) -> dict[BucketKey, Bucket]:
        """New buckets for every bucket a pending rule touches (the slow part)."""
        wanted = self.dirty()
        all_plans = [p for per_kind in self.plans.values() for p in per_kind.values()]
        return {key: build_bucket(entries)
                for key, entries in bucket_entries(all_plans, self.layout, wanted).items()}

    def with_rebuilt(self, base: RuleIndex, built: Mapping[BucketKey, Bucket]) -> RuleIndex:
        """Install buckets `base.rebuild()` made; rules changed since `base` stay pending."""
        if base.generation != self.generation:
            return self
        pending = {rid: keys for rid, keys in self.pending.items()
                   if self.plans.get(rid) is not base.plans.get(rid)}
        return replace(self, fields=_install(self.fields, self.layout, built),
                       pending=MappingProxyType(pending))


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
