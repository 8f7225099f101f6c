"""`decnet-ttp rules coverage` and `decnet-ttp tag --navigator`: what a SOC lead sees."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from typer.testing import CliRunner

from decnet.cli.app import app
from tests.ttp.coverage.layer_schema import layer_errors

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "rules" / "ttp"
runner = CliRunner()

RULE = """\
rule_id: {rule_id}
rule_version: 1
name: {name}
applies_to: [command]
match: {{pattern: '{pattern}'}}
emits:
  - {{tactic: {tactic}, technique_id: {technique}, confidence: {confidence}}}
"""


def write_rules(directory: Path) -> None:
    directory.mkdir()
    for rule_id, name, pattern, tactic, technique, confidence in (
        ("R0001", "uname", "uname", "TA0007", "T1082", 0.5),
        ("R0002", "uname_again", "uname -a", "TA0007", "T1082", 0.9),
        ("R0003", "whoami", "whoami", "TA0007", "T1033", 0.6),
        ("R0004", "cron", "crontab", "TA0003", "T1053", 0.7),
    ):
        (directory / f"{rule_id}.yaml").write_text(RULE.format(
            rule_id=rule_id, name=name, pattern=pattern, tactic=tactic, technique=technique,
            confidence=confidence))


def test_the_table_counts_techniques_and_rules_per_tactic(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules")
    result = runner.invoke(app, ["rules", "coverage", str(tmp_path / "rules")],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in result.output.splitlines() if line.startswith("│ TA")}
    assert len(rows) == 14
    assert rows["TA0007"] == ["discovery", "2", "3", "T1033, T1082"]
    assert rows["TA0003"] == ["persistence", "1", "1", "T1053"]
    assert rows["TA0040"] == ["impact", "0", "0", ""]
    assert result.output.splitlines()[-1] == (
        "3 technique(s) and sub-technique(s) in 2 of 14 tactics, from 4 rule(s)")


def test_the_navigator_layer_of_the_pack_loads(tmp_path: Path) -> None:
    target = tmp_path / "pack.json"
    result = runner.invoke(app, ["rules", "coverage", str(PACK), "--navigator", str(target)])
    assert result.exit_code == 0, result.output
    layer = orjson.loads(target.read_bytes())
    assert layer_errors(layer) == []
    assert layer["versions"] == {"attack": "16", "navigator": "5.1.0", "layer": "4.5"}
    assert f"{len(layer['techniques'])} layer entries" in result.output


def test_the_navigator_layer_names_the_covering_rules(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules")
    target = tmp_path / "layer.json"
    runner.invoke(app, ["rules", "coverage", str(tmp_path / "rules"), "--navigator",
                        str(target)])
    entries = {t["techniqueID"]: t for t in orjson.loads(target.read_bytes())["techniques"]}
    assert entries["T1082"]["score"] == 90
    assert entries["T1082"]["tactic"] == "discovery"
    assert entries["T1082"]["comment"] == "R0001 uname (0.50)\nR0002 uname_again (0.90)"


def test_tag_writes_a_layer_of_what_it_tagged(tmp_path: Path) -> None:
    target = tmp_path / "observed.json"
    tags = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["tag", str(ROOT / "examples" / "events.jsonl"), "--rules",
                                 str(PACK), "-o", str(tags), "--navigator", str(target)])
    assert result.exit_code == 0, result.output
    layer = orjson.loads(target.read_bytes())
    assert layer_errors(layer) == []
    counted = Counter(t["sub_technique_id"] or t["technique_id"]
                      for t in map(orjson.loads, tags.read_bytes().splitlines()))
    assert {t["techniqueID"]: t["score"] for t in layer["techniques"]} == dict(counted)
    assert layer["gradient"]["maxValue"] == max(counted.values())
