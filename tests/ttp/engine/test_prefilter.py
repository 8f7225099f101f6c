"""The prefilter: necessary leaves, one set per bucket, and the fallbacks it keeps exact."""

from __future__ import annotations

from typing import Any

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.index import RuleIndex
from decnet.ttp.engine.prefilter import Bucket, build_bucket, plan_rule
from decnet.ttp.rules.matchers import PatternLeaf
from tests.ttp.engine.strategies import make_rule


def plan(match: dict[str, Any]) -> Any:
    result = plan_rule(make_rule("R0001", match, ["command"]), "command")
    assert result is not None
    return result


def test_a_single_pattern_is_matched_by_the_set_alone() -> None:
    p = plan({"pattern": r"\bwget\b"})
    assert p.single and p.necessary == frozenset({0})


def test_necessary_leaves() -> None:
    assert plan({"all": [{"contains": "x"}, {"pattern": "a"}, {"any": [
        {"pattern": "b"}, {"pattern": "c"}]}]}).necessary == frozenset({0})
    assert plan({"any": [{"pattern": "a"}, {"pattern": "b"}]}).necessary == {0, 1}
    assert plan({"any": [{"pattern": "a"}, {"contains": "b"}]}).necessary is None
    assert plan({"not": {"pattern": "a"}}).necessary is None
    assert plan({"contains": "a"}).necessary is None
    # a pattern RE2 cannot run stays out of the sets: the rule is always evaluated
    fallback = plan({"pattern": r"(?<!a)b"})
    assert fallback.set_leaves == () and fallback.necessary is None
    # `$` before more pattern: a hit must be confirmed on texts with inner newlines
    assert not plan({"pattern": r"a$\s+b"}).single


def test_rules_without_necessary_leaves_are_evaluated_for_every_event() -> None:
    engine = RuleEngine([make_rule("R0001", {"not": {"pattern": "safe"}}, ["command"])])
    event = {"source_kind": "command", "source_id": "1", "payload": {"command_text": "x"}}
    assert [t.rule_id for t in engine.evaluate(event)] == ["R0001"]


def test_identical_patterns_share_one_set_entry() -> None:
    rules = [make_rule(f"R{i:04d}", {"pattern": r"\bid\b"}, ["command"]) for i in range(3)]
    index = RuleIndex.build(rules)
    (field,) = index.fields["command"]
    (bucket,) = field.buckets
    assert len(bucket.patterns) == 2  # the sentinel and one shared pattern
    assert {rid for rid, _bits in bucket.triggers[1]} == {"R0000", "R0001", "R0002"}


def leaves_of(match: dict[str, Any]) -> list[tuple[str, int, PatternLeaf]]:
    rule = make_rule("R0001", match, ["command"])
    leaves = [leaf for leaf in rule.matchers["command"].leaves()
              if isinstance(leaf, PatternLeaf)]
    return [("R0001", bit, leaf) for bit, leaf in enumerate(leaves)]


def test_a_set_whose_dfa_gives_up_is_searched_pattern_by_pattern() -> None:
    bucket = build_bucket(leaves_of({"any": [{"pattern": "ab"}, {"pattern": "cd"}]}))
    assert sorted(bucket.match(b"xxcd")) == [0, 2]

    class GaveUp:
        def Match(self, data: bytes) -> list[int]:
            return []  # what RE2::Set::Match reports when its DFA runs out of memory

    crippled = Bucket(GaveUp(), bucket.triggers, bucket.patterns, bucket.empty_hits,
                      bucket.extra, bucket.rule_ids)
    assert sorted(crippled.match(b"xxcd")) == [2]
    assert sorted(crippled.match(b"abcd")) == [1, 2]


def test_empty_text_uses_python_answers() -> None:
    bucket = build_bucket(leaves_of({"any": [{"pattern": "^$"}, {"pattern": r"\B"},
                                             {"pattern": "x*"}]}))
    assert [bucket.patterns[i].source for i in bucket.empty_hits] == ["^$", "x*"]
