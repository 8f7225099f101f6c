"""Patterns RE2 cannot run: exact through the sandbox, and unable to stall the worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.rules.regex import compile_search
from decnet.ttp.rules.sandbox import Sandbox, default_sandbox
from tests.ttp.engine.strategies import make_rule

HOSTILE = r"(?<!x)(a+)+$"          # lookbehind: no RE2 form; nested quantifier: ReDoS
HOSTILE_TEXT = "a" * 50_000 + "b"  # 50 KB; Python's backtracking would take ages


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(budget_seconds=0.05, quarantine_seconds=3600)
    yield box
    box.close()


def test_fallback_patterns_are_exact_in_the_sandbox(sandbox: Sandbox) -> None:
    pattern = compile_search(r"(?<=user=)root\b|(\w)\1{3}")
    assert sandbox.search(pattern, "login user=root ok") is True
    assert sandbox.search(pattern, "root") is False
    assert sandbox.search(pattern, "zzzz") is True
    assert sandbox.stats.calls == 3 and sandbox.stats.timeouts == 0


def test_a_hostile_search_is_killed_counted_and_quarantined(sandbox: Sandbox) -> None:
    hostile = compile_search(HOSTILE)
    benign = compile_search(r"(?<=a)b")
    assert sandbox.search(hostile, HOSTILE_TEXT) is None   # ran out of budget: no answer
    assert sandbox.stats.timeouts == 1 and sandbox.stats.restarts == 1
    # the replacement child answers at once; the hostile pattern is not run again
    assert sandbox.search(benign, "ab") is True
    assert sandbox.search(hostile, "aaa") is None
    assert sandbox.stats.skipped == 1 and sandbox.stats.timeouts == 1


def test_expired_deadline_and_oversized_input_are_skipped(sandbox: Sandbox) -> None:
    pattern = compile_search(r"(?<=a)b")
    assert sandbox.search(pattern, "ab", deadline=0.0) is None
    sandbox.max_input_chars = 10
    assert sandbox.search(pattern, "a" * 11 + "b") is None
    assert sandbox.stats.skipped == 2


def test_the_engine_keeps_tagging_around_a_hostile_rule() -> None:
    engine = RuleEngine([
        make_rule("R0001", {"pattern": HOSTILE}, ["command"]),
        make_rule("R0002", {"pattern": r"\baaaa"}, ["command"]),
    ])
    assert engine.rules["R0001"].warnings
    before = default_sandbox().stats.timeouts
    hostile = {"source_kind": "command", "source_id": "h",
               "payload": {"command_text": HOSTILE_TEXT}}
    # the hostile rule counts as no match; the RE2 rule still fires on the same event
    assert [t.rule_id for t in engine.evaluate(hostile)] == ["R0002"]
    assert default_sandbox().stats.timeouts == before + 1
    benign = {"source_kind": "command", "source_id": "b",
              "payload": {"command_text": "aaaa"}}
    # the hostile rule is quarantined now: benign events do not pay for it
    assert [t.rule_id for t in engine.evaluate(benign)] == ["R0002"]
    assert engine.sandbox_stats.timeouts == before + 1


def test_redos_prone_patterns_re2_can_run_never_reach_the_sandbox() -> None:
    pattern = compile_search(r"(a+)+$")
    assert not pattern.is_fallback
    calls = default_sandbox().stats.calls
    assert pattern.search(HOSTILE_TEXT) is False
    assert pattern.search("a" * 50_000) is True
    assert default_sandbox().stats.calls == calls
