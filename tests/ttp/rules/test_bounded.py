"""The regex fallback: exact PCRE2 translation, a step limit per search, no memory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pcre2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decnet.ttp.constants import FALLBACK_MAX_TEXT_CHARS
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.rules.bounded import STATS, BoundedSearch, compile_bounded, step_limit
from decnet.ttp.rules.regex import compile_search, translate_pcre2
from tests.ttp.engine.strategies import make_rule, regexes, texts

HOSTILE = r"(?<!x)(a+)+$"          # lookbehind: no RE2 form; nested quantifier: ReDoS
HOSTILE_TEXT = "a" * 50_000 + "b"  # 50 KB; unbounded backtracking would take ages
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def reference(pattern: str, text: str, ignore_case: bool = False) -> bool:
    flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
    return re.search(pattern, text, flags) is not None


@SETTINGS
@given(pattern=regexes(fallback=True), text=texts(), ignore_case=st.booleans())
def test_pcre2_translation_agrees_with_python_re(pattern: str, text: str,
                                                 ignore_case: bool) -> None:
    """Every pattern, RE2-capable or not, forced through the bounded PCRE2 search."""
    compiled = compile_search(pattern, ignore_case=ignore_case)
    if text:  # the empty text is decided at load, by Python
        assert compiled.bounded.search(text) == reference(pattern, text, ignore_case)


LOOKAROUND_BODIES = st.sampled_from([r"\s|/|$", "a", r"\b", "b|$", r"[ab]\d", "^a", r"\Z"])


@SETTINGS
@given(body=regexes(), edge=st.sampled_from(["ahead", "behind", "both", "branches"]),
       look=LOOKAROUND_BODIES, text=texts(), ignore_case=st.booleans())
def test_lookaround_at_the_edges_runs_on_re2_exactly(
        body: str, edge: str, look: str, text: str, ignore_case: bool) -> None:
    ahead, behind = f"(?={look})", f"(?<={look})" if "|" not in look else "(?<=a)"
    pattern = {"ahead": f"(?:{body}){ahead}", "behind": f"{behind}(?:{body})",
               "both": f"{behind}(?:{body}){ahead}",
               "branches": f"(?:{behind}x|y{ahead}|(?:{body}){ahead})"}[edge]
    try:
        re.compile(pattern, re.ASCII)
    except re.error:
        return
    compiled = compile_search(pattern, ignore_case=ignore_case)
    assert not compiled.is_fallback, compiled.reason
    assert compiled.search(text) == reference(pattern, text, ignore_case)


def test_the_anchor_packs_r0016_runs_on_re2() -> None:
    pattern = r"\bfind\s+/(?:home|etc|var|opt|root|tmp|usr)?(?=\s|/|$)"  # R0016, verbatim
    compiled = compile_search(pattern)
    assert compiled.engine == "re2" and compiled.warning is None
    for text in ("find / -name x", "find /tmp/x", "find /etc\n", "find /etcetera",
                 "find /\nx", "find  /usr", "xfind /"):
        assert compiled.search(text) == reference(pattern, text), text


def test_nested_counted_repeats_fit_in_a_pcre2_program() -> None:
    compiled = compile_search(r"(?<!x)(?:[a-z]{100}){100}")
    assert compiled.is_fallback
    assert compiled.search("1" + "a" * 10_000) and not compiled.search("1" + "a" * 9_999)


def test_a_case_insensitive_backreference_is_refused_at_load() -> None:
    # PCRE2 would also fold non-ASCII letters ('é' and 'É'), which Python's ASCII mode does not
    with pytest.raises(re.error, match="case-insensitive backreference"):
        compile_search(r"(.)\1", ignore_case=True)
    assert compile_search(r"(.)\1").search("zz")


def test_the_limit_is_per_search_and_grows_with_the_text() -> None:
    assert step_limit(1) == step_limit(1024) < step_limit(1025) == step_limit(2048)
    # the search below needs a few thousand steps: it stops at a limit of 1,000 and
    # finishes (finding nothing) within the default; two more `a` cost 4 times more
    source = translate_pcre2(HOSTILE)
    text = "a" * 10 + "b"
    with pytest.raises(pcre2.LibraryError, match="match limit"):
        compile_bounded(source, 1_000).search(text)
    assert compile_bounded(source, step_limit(len(text))).search(text) is None
    with pytest.raises(pcre2.LibraryError, match="match limit"):
        compile_bounded(source, step_limit(100)).search("a" * 14 + "b")


def test_a_flood_of_poison_events_costs_one_bounded_search_each() -> None:
    """Counted, not timed: one search and one limit hit per poison event, then the
    same pattern matches the next benign event (nothing is quarantined)."""
    engine = RuleEngine([
        make_rule("R0001", {"pattern": HOSTILE}, ["command"]),
        make_rule("R0002", {"pattern": r"\baaaa"}, ["command"]),
    ])
    assert engine.rules["R0001"].warnings
    stats = engine.fallback_stats
    searches, hits = stats.searches, stats.limit_hits
    poison = {"source_kind": "command", "source_id": "p",
              "payload": {"command_text": HOSTILE_TEXT}}
    for _ in range(50):
        # the hostile rule counts as no match; the RE2 rule still fires on the same event
        assert [t.rule_id for t in engine.evaluate(poison)] == ["R0002"]
    assert stats.searches - searches == 50 and stats.limit_hits - hits == 50
    benign = {"source_kind": "command", "source_id": "b", "payload": {"command_text": "aaaa"}}
    assert [t.rule_id for t in engine.evaluate(benign)] == ["R0001", "R0002"]
    assert stats.limit_hits - hits == 50


def test_the_first_search_in_a_process_is_answered() -> None:
    """No cold start: a pattern compiled now answers its very first search."""
    engine = RuleEngine([make_rule("R0001", {"pattern": r"(?<!y)x(?=abc)abc"}, ["command"])])
    events = [{"source_kind": "command", "source_id": str(i),
               "payload": {"command_text": "xabc"}} for i in range(3)]
    assert [len(engine.evaluate(e)) for e in events] == [1, 1, 1]


COLD_RULE = """\
rule_id: {rule_id}
rule_version: 1
name: cold_{rule_id}
applies_to: [command]
match: {{pattern: '{pattern}'}}
emits: [{{tactic: TA0007, technique_id: T1082, confidence: 0.5}}]
"""


def test_a_fresh_tag_process_tags_its_first_events(tmp_path: Path) -> None:
    """The issue's reproduction: a new `decnet-ttp tag` process, three `xabc` events."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for rule_id, pattern in (("R0001", "(?<=x)abc"), ("R0002", "(?<!y)x(?=abc)abc(?!d)")):
        (rules / f"{rule_id}.yaml").write_text(COLD_RULE.format(rule_id=rule_id,
                                                                pattern=pattern))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(
        f'{{"source_kind": "command", "source_id": "e{i}", '
        f'"payload": {{"command_text": "xabc"}}}}\n' for i in range(3)))
    out = tmp_path / "tags.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", "from decnet.cli.app import main; main()", "tag", str(events),
         "-o", str(out), "--rules", str(rules)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    tags = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((t["source_id"], t["rule_id"]) for t in tags) == [
        (f"e{i}", r) for i in range(3) for r in ("R0001", "R0002")]


def test_oversized_texts_are_counted_not_searched() -> None:
    search = BoundedSearch(translate_pcre2("(?<=a)b"))
    before = STATS.oversized
    assert search.search("ab" * (FALLBACK_MAX_TEXT_CHARS // 2 + 1)) is False
    assert STATS.oversized == before + 1
    assert search.search("x" * 100_000 + "ab") is True
