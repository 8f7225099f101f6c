"""Property: the optimized engine and the plain reference loop produce the same tags."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.reference import ReferenceEngine
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import RuleChange
from tests.ttp.engine.strategies import events, rule_sets

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def tags(engine: RuleEngine | ReferenceEngine, event: dict[str, Any]) -> list[dict[str, Any]]:
    return [t.as_dict() for t in engine.evaluate(event)]


@SETTINGS
@given(rules=rule_sets(), batch=st.lists(events(), min_size=1, max_size=8))
def test_engine_equals_reference(rules: list[CompiledRule], batch: list[dict[str, Any]]) -> None:
    engine, reference = RuleEngine(rules), ReferenceEngine(rules)
    for event in batch:
        assert tags(engine, event) == tags(reference, event)


@settings(SETTINGS, max_examples=100)
@given(rules=rule_sets(fallback=True), batch=st.lists(events(), min_size=1, max_size=4))
def test_engine_equals_reference_with_fallback_patterns(
        rules: list[CompiledRule], batch: list[dict[str, Any]]) -> None:
    engine, reference = RuleEngine(rules), ReferenceEngine(rules)
    for event in batch:
        assert tags(engine, event) == tags(reference, event)


@settings(SETTINGS, max_examples=150)
@given(before=rule_sets(), after=rule_sets(), data=st.data())
def test_engine_equals_reference_through_changes(
        before: list[CompiledRule], after: list[CompiledRule], data: st.DataObject) -> None:
    """Changed rules are right while pending and after the buckets are rebuilt."""
    engine = RuleEngine(before, background=False)
    pending = RuleEngine(before)
    pending._background = False
    live = {r.rule_id: r for r in before}
    for rule in after:
        change = RuleChange("definition", rule.rule_id, rule)
        engine.apply(change)
        pending._index = pending._index.with_rule(rule)
        live[rule.rule_id] = rule
    for rule_id in data.draw(st.lists(st.sampled_from(sorted(live)), max_size=2)):
        engine.apply(RuleChange("deleted", rule_id))
        pending._index = pending._index.without(rule_id)
        live.pop(rule_id, None)
    reference = ReferenceEngine(live.values())
    assert engine.pending == 0
    for event in data.draw(st.lists(events(), min_size=1, max_size=6)):
        expected = tags(reference, event)
        assert tags(engine, event) == expected
        assert tags(pending, event) == expected
