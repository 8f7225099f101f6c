"""The engine's dispatch index: an immutable value swapped whole on every change."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import StateName


def may_fire(rule: CompiledRule) -> bool:
    """Whether a rule belongs in the dispatch lists (a disabled state may still expire)."""
    if rule.is_lifter:
        return False
    return not (rule.state.state is StateName.DISABLED and rule.state.expires_at is None)


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Every rule by id, and the rules that may fire per source kind."""

    rules: Mapping[str, CompiledRule]
    by_kind: Mapping[str, tuple[CompiledRule, ...]]

    @classmethod
    def build(cls, rules: Iterable[CompiledRule]) -> RuleIndex:
        by_id = {rule.rule_id: rule for rule in rules}
        return cls(MappingProxyType(by_id), _dispatch(by_id))

    def with_rule(self, rule: CompiledRule) -> RuleIndex:
        by_id = dict(self.rules)
        by_id[rule.rule_id] = rule
        return RuleIndex(MappingProxyType(by_id), _dispatch(by_id))

    def without(self, rule_id: str) -> RuleIndex:
        if rule_id not in self.rules:
            return self
        by_id = dict(self.rules)
        del by_id[rule_id]
        return RuleIndex(MappingProxyType(by_id), _dispatch(by_id))


def _dispatch(by_id: Mapping[str, CompiledRule]) -> Mapping[str, tuple[CompiledRule, ...]]:
    lists: dict[str, list[CompiledRule]] = {}
    for rule_id in sorted(by_id):
        rule = by_id[rule_id]
        if may_fire(rule):
            for kind in rule.applies_to:
                lists.setdefault(kind, []).append(rule)
    return MappingProxyType({kind: tuple(rules) for kind, rules in lists.items()})
