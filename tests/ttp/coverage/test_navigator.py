"""Navigator layers of rule coverage and of observed techniques load in the Navigator."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from decnet.ttp.constants import ATTACK_RELEASE
from decnet.ttp.coverage import layer_from_counts, layer_from_rules
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.loader import load_directory
from decnet.ttp.store.base import RuleState, StateName
from tests.ttp.coverage.layer_schema import layer_errors

ROOT = Path(__file__).resolve().parents[3]

RULE = """\
rule_id: {rule_id}
rule_version: 1
name: {name}
applies_to: [command]
match: {{pattern: 'x'}}
emits:
{emits}"""


def rule(rule_id: str, emits: str, state: RuleState | None = None) -> CompiledRule:
    text = RULE.format(rule_id=rule_id, name=f"rule_{rule_id.lower()}", emits=emits)
    return compile_rule(text, source=f"{rule_id}.yaml", state=state or RuleState())


def test_the_schema_accepts_every_documented_property_and_refuses_mistakes() -> None:
    full: dict[str, Any] = {
        "name": "all fields", "versions": {"attack": "16", "navigator": "5.1.0", "layer": "4.5"},
        "domain": "enterprise-attack", "description": "d", "customDataURL": "https://x/y.json",
        "filters": {"platforms": ["Linux"]}, "sorting": 2,
        "layout": {"layout": "flat", "showID": True, "showName": False,
                   "showAggregateScores": True, "countUnscored": True,
                   "aggregateFunction": "sum", "expandedSubtechniques": "all"},
        "hideDisabled": True,
        "techniques": [{"techniqueID": "T1110", "tactic": "credential-access", "comment": "c",
                        "enabled": False, "score": 3.5, "color": "#aabbcc",
                        "metadata": [{"name": "n", "value": "v"}, {"divider": True}],
                        "links": [{"label": "l", "url": "https://example.org"},
                                  {"divider": True}],
                        "showSubtechniques": True},
                       {"techniqueID": "T1110.001"}],
        "gradient": {"colors": ["#ff0000", "#00ff00", "#0000ff"], "minValue": -1,
                     "maxValue": 1},
        "legendItems": [{"label": "x", "color": "#123456"}],
        "showTacticRowBackground": True, "tacticRowBackground": "#dddddd",
        "selectTechniquesAcrossTactics": False, "selectSubtechniquesWithParent": False,
        "selectVisibleTechniques": True,
        "metadata": [{"name": "a", "value": "b"}], "links": [{"label": "a", "url": "http://b"}],
    }
    assert layer_errors(full) == []
    assert layer_errors({"name": "minimal", "domain": "ics-attack"}) == []
    for broken in (
        {**full, "versions": {"navigator": "5.1.0", "layer": "4.4"}},
        {**full, "versions": {"navigator": "4.8.2", "layer": "4.5"}},
        {**full, "domain": "mitre-enterprise"},
        {**full, "techniques": [{"techniqueID": "T1110.1"}]},
        {**full, "techniques": [{"techniqueID": "T1110", "score": "high"}]},
        {**full, "techniques": [{"techniqueId": "T1110"}]},
        {**full, "gradient": {"colors": ["#fff"], "minValue": 0, "maxValue": 1}},
        {**full, "gradient": {"colors": ["#ffffff", "#000000"], "minValue": 5, "maxValue": 5}},
        {**full, "links": [{"label": "a", "url": "example.org"}]},
        {key: value for key, value in full.items() if key != "name"},
    ):
        assert layer_errors(broken), broken


def test_the_pack_layer_is_valid_and_names_the_pinned_attack_version() -> None:
    pack = load_directory(ROOT / "rules" / "ttp").rules.values()
    layer = layer_from_rules(pack)
    assert layer_errors(layer) == []
    assert layer["domain"] == "enterprise-attack"
    assert layer["versions"] == {"attack": "16", "navigator": "5.1.0", "layer": "4.5"}
    assert f"enterprise-attack-v{layer['versions']['attack']}" == ATTACK_RELEASE
    assert orjson.loads(orjson.dumps(layer)) == layer
    emitted = {(e.sub_technique_id or e.technique_id, e.tactic) for r in pack for e in r.emits}
    assert len(layer["techniques"]) == len(emitted)


def test_entries_score_by_best_confidence_and_comment_the_rules() -> None:
    layer = layer_from_rules([
        rule("R0001", "  - {tactic: TA0007, technique_id: T1082, confidence: 0.4}\n"),
        rule("R0002", "  - {tactic: TA0007, technique_id: T1082, confidence: 0.85}\n"
                      "  - {tactic: TA0004, technique_id: T1548, sub_technique_id: T1548.001,"
                      " confidence: 0.95}\n"),
        rule("R0003", "  - {tactic: TA0005, technique_id: T1548, sub_technique_id: T1548.001,"
                      " confidence: 0.5}\n"),
    ])
    entries = {(t["techniqueID"], t["tactic"]): t for t in layer["techniques"]}
    assert set(entries) == {("T1082", "discovery"), ("T1548.001", "privilege-escalation"),
                            ("T1548.001", "defense-evasion")}
    discovery = entries["T1082", "discovery"]
    assert discovery["score"] == 85
    assert discovery["comment"] == "R0001 rule_r0001 (0.40)\nR0002 rule_r0002 (0.85)"
    assert entries["T1548.001", "defense-evasion"]["score"] == 50
    assert layer_errors(layer) == []


def test_disabled_rules_cover_nothing_and_clipped_ones_count_at_their_ceiling() -> None:
    emits = "  - {tactic: TA0007, technique_id: T1082, confidence: 0.9}\n"
    layer = layer_from_rules([
        rule("R0001", emits, RuleState(StateName.DISABLED)),
        rule("R0002", emits, RuleState(StateName.CLIPPED, confidence_max=0.3)),
    ])
    [entry] = layer["techniques"]
    assert (entry["score"], entry["comment"]) == (30, "R0002 rule_r0002 (0.30)")


def test_a_lifter_rule_says_so() -> None:
    lifter = compile_rule(
        "rule_id: R0009\nrule_version: 1\nname: brute\napplies_to: [auth_attempt]\n"
        "match: {kind: 'lifter:brute_force'}\n"
        "emits: [{tactic: TA0006, technique_id: T1110, confidence: 0.8}]\n", source="R0009")
    [entry] = layer_from_rules([lifter])["techniques"]
    assert entry["comment"] == "R0009 brute (0.80) [lifter:brute_force]"


@pytest.mark.parametrize("counts", [Counter(), Counter({"T1082": 7, "T1548.001": 2})])
def test_an_observed_layer_scores_tag_counts(counts: Counter[str]) -> None:
    layer = layer_from_counts(counts)
    assert layer_errors(layer) == []
    assert {t["techniqueID"]: t["score"] for t in layer["techniques"]} == dict(counts)
    assert all("tactic" not in t for t in layer["techniques"])
    assert layer["gradient"]["maxValue"] == max([*counts.values(), 1])
