"""The shipped rule pack: every pattern rule fires on attacker input and not on look-alikes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.rules.loader import load_directory

ROOT = Path(__file__).resolve().parents[2]
PACK = load_directory(ROOT / "rules" / "ttp")
SAMPLES: dict[str, dict[str, list[dict[str, Any]]]] = yaml.safe_load(
    (Path(__file__).parent / "rule_samples.yaml").read_text(encoding="utf-8"))
PATTERN_RULES = sorted(r.rule_id for r in PACK.rules.values() if r.matchers)
ENGINE = RuleEngine(PACK.rules.values())


def fired_rules(sample: dict[str, Any], n: int) -> set[str]:
    event = {"source_id": f"sample-{n}", **sample}
    return {tag.rule_id for tag in ENGINE.evaluate(event)}


def test_the_pack_is_complete_and_valid() -> None:
    assert PACK.errors == []
    assert len(PACK.rules) >= 40
    assert not PACK.warnings


def test_every_pattern_rule_has_samples_both_ways() -> None:
    for rule_id in PATTERN_RULES:
        assert SAMPLES.get(rule_id, {}).get("fires"), f"{rule_id} has no firing sample"
        assert SAMPLES.get(rule_id, {}).get("quiet"), f"{rule_id} has no quiet sample"


@pytest.mark.parametrize("rule_id", PATTERN_RULES)
def test_rule_fires_on_attacker_input(rule_id: str) -> None:
    for n, sample in enumerate(SAMPLES[rule_id]["fires"]):
        assert rule_id in fired_rules(sample, n), f"{rule_id} missed {sample['payload']}"


@pytest.mark.parametrize("rule_id", PATTERN_RULES)
def test_rule_stays_quiet_on_look_alikes(rule_id: str) -> None:
    for n, sample in enumerate(SAMPLES[rule_id]["quiet"]):
        assert rule_id not in fired_rules(sample, n), f"{rule_id} fired on {sample['payload']}"


def test_example_events_mostly_match_nothing() -> None:
    import orjson

    lines = (ROOT / "examples" / "events.jsonl").read_bytes().splitlines()
    assert len(lines) >= 300
    matched = sum(1 for line in lines if ENGINE.evaluate(orjson.loads(line)))
    multi = sum(1 for line in lines
                if len({t.rule_id for t in ENGINE.evaluate(orjson.loads(line))}) > 1)
    assert 0.15 * len(lines) < matched < 0.5 * len(lines)
    assert multi >= 5
