"""Property: after any sequence of changes, the compacted index (main buckets with
rules stripped, plus each field's patch, folded when full) holds exactly the entries a
full build of the same rules holds, and tags like the reference engine."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decnet.ttp.engine import index as index_module
from decnet.ttp.engine import prefilter
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.index import RuleIndex
from decnet.ttp.engine.reference import ReferenceEngine
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import DEFINITION, DELETED, RuleChange
from tests.ttp.engine.strategies import events, make_rule, rule_sets

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

Entries = set[tuple[str, str, str, int, str]]


def entries(index: RuleIndex) -> Entries:
    """(kind, field, rule id, bits, pattern) of every entry an evaluation can trigger."""
    out: Entries = set()
    for kind, per_kind in index.fields.items():
        for field_index in per_kind:
            for bucket in field_index.scan:
                for i, group in enumerate(bucket.triggers):
                    pattern = bucket.patterns[i]
                    for rule_id, bits in group:
                        assert pattern is not None
                        out.add((kind, field_index.field, rule_id, bits,
                                 str(pattern.re2_source)))
                for rule_id, bits, extra in bucket.extra:
                    out.add((kind, field_index.field, rule_id, bits, str(extra.re2_source)))
    return out


def tags(engine: RuleEngine | ReferenceEngine, event: dict[str, Any]) -> list[dict[str, Any]]:
    return [t.as_dict() for t in engine.evaluate(event)]


@SETTINGS
@given(before=rule_sets(max_rules=8), data=st.data(),
       patch_leaves=st.sampled_from([0, 1, 3, 1000]), bucket_size=st.sampled_from([1, 2, 512]))
def test_compacted_index_equals_a_full_build(before: list[CompiledRule], data: st.DataObject,
                                             patch_leaves: int, bucket_size: int) -> None:
    with patch.object(index_module, "PATCH_LEAVES", patch_leaves), \
            patch.object(prefilter, "BUCKET_SIZE", bucket_size):
        engine = RuleEngine(before, background=False)
        live = {r.rule_id: r for r in before}
        for _ in range(data.draw(st.integers(1, 4))):
            for rule in data.draw(rule_sets(max_rules=8)):
                if data.draw(st.booleans()):
                    engine.apply(RuleChange(DEFINITION, rule.rule_id, rule))
                    live[rule.rule_id] = rule
            for rule_id in data.draw(st.lists(st.sampled_from(sorted(live) or ["R0000"]),
                                              max_size=2)):
                engine.apply(RuleChange(DELETED, rule_id))
                live.pop(rule_id, None)
            assert engine.pending == 0
            assert entries(engine._index) == entries(RuleIndex.build(live.values()))
        reference = ReferenceEngine(live.values())
        for event in data.draw(st.lists(events(), min_size=1, max_size=4)):
            assert tags(engine, event) == tags(reference, event)


def event(command: str) -> dict[str, Any]:
    return {"source_kind": "command", "source_id": "1", "session_id": "s1",
            "payload": {"command_text": command}}


def test_a_definition_change_compiles_the_patch_not_the_bucket() -> None:
    """A changed rule leaves the main bucket's RE2 set as it was: only its entries go."""
    pack = [make_rule(f"R{i:04d}", {"field": "command_text", "pattern": f"tool{i}"},
                      ["command"]) for i in range(20)]
    engine = RuleEngine(pack, background=False)
    (field_index,) = engine._index.fields["command"]
    (main,) = field_index.buckets
    changed = make_rule("R0003", {"field": "command_text", "pattern": "other3"}, ["command"],
                        version=2)
    engine.apply(RuleChange(DEFINITION, "R0003", changed))
    (field_index,) = engine._index.fields["command"]
    assert field_index.buckets[0].matcher is main.matcher
    assert "R0003" not in field_index.buckets[0].rule_ids
    assert field_index.patch.rule_ids == {"R0003"}
    assert [t.rule_id for t in engine.evaluate(
        event("other3"))] == ["R0003"]
    assert engine.evaluate(event("tool3")) == []
