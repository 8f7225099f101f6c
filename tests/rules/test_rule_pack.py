"""The shipped rule pack: valid, and every pattern rule passes its own tests both ways."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from decnet.cli.app import app
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.jobs.rule_tests import rule_tests, run_rule_tests
from decnet.ttp.rules.loader import load_directory

ROOT = Path(__file__).resolve().parents[2]
PACK_DIR = ROOT / "rules" / "ttp"
PACK = load_directory(PACK_DIR)
PATTERN_RULES = sorted(r.rule_id for r in PACK.rules.values()
                       if r.matchers and not r.is_correlation)
ENGINE = RuleEngine(PACK.rules.values())


def test_the_pack_is_complete_and_valid() -> None:
    assert PACK.errors == []
    assert len(PACK.rules) >= 40
    assert not PACK.warnings


def test_every_pattern_rule_has_tests_both_ways() -> None:
    for rule_id in PATTERN_RULES:
        tests, _ = rule_tests(PACK.rules[rule_id])
        assert tests is not None, f"{rule_id} has no tests"
        assert tests.fires, f"{rule_id} has no firing test"
        assert tests.quiet, f"{rule_id} has no quiet test"


def test_every_rule_test_of_the_pack_passes() -> None:
    report = run_rule_tests(PACK.rules.values())
    assert report.rules_tested >= len(PATTERN_RULES)
    assert [(f.rule_id, f.kind, f.index, f.reason) for f in report.failures] == []


def test_rules_test_command_passes_on_the_pack() -> None:
    result = CliRunner().invoke(app, ["rules", "test", str(PACK_DIR)])
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output


def test_example_events_mostly_match_nothing() -> None:
    import orjson

    lines = (ROOT / "examples" / "events.jsonl").read_bytes().splitlines()
    assert len(lines) >= 300
    matched = sum(1 for line in lines if ENGINE.evaluate(orjson.loads(line)))
    multi = sum(1 for line in lines
                if len({t.rule_id for t in ENGINE.evaluate(orjson.loads(line))}) > 1)
    assert 0.15 * len(lines) < matched < 0.5 * len(lines)
    assert multi >= 5


def test_the_demo_cowrie_log_fires_the_cross_event_rules(tmp_path: Path) -> None:
    import orjson

    out = tmp_path / "tags.jsonl"
    result = CliRunner().invoke(app, ["tag", str(ROOT / "examples" / "cowrie.json"),
                                      "--format", "cowrie", "--jobs", "1",
                                      "--rules", str(PACK_DIR), "-o", str(out)])
    assert result.exit_code == 0, result.output
    tags = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    fired = [t["rule_id"] for t in tags]
    # brute force, guessing one account, login after brute force, tunnel fan-out, survey
    for rule_id in ("R0073", "R0074", "R0075", "R0077", "R0078"):
        assert fired.count(rule_id) == (2 if rule_id == "R0078" else 1), rule_id
    brute = next(t for t in tags if t["rule_id"] == "R0073")
    assert (brute["src_ip"], brute["sensor"]) == ("203.0.113.45", "hp-fra-02")
