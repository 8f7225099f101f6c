"""`decnet-ttp rules validate|list`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from decnet.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

GOOD = """\
rule_id: {rule_id}
rule_version: 1
name: uname
applies_to: [command]
match: {{pattern: 'uname'}}
emits: [{{tactic: TA0007, technique_id: T1082, confidence: 0.5}}]
"""


def test_validate_lists_every_error_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(GOOD.format(rule_id="R0001"))
    (tmp_path / "R0002.yaml").write_text(GOOD.format(rule_id="R0002").replace("TA0007", "TA1"))
    (tmp_path / "R0003.yaml").write_text(GOOD.format(rule_id="R0003") + "emit: []\n")
    (tmp_path / "R0004.yaml").write_text(GOOD.format(rule_id="R0004").replace("'uname'", "'('"))
    result = runner.invoke(app, ["rules", "validate", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 1
    for fragment in ("R0002.yaml:6:", "emits.0.tactic", "R0003.yaml:7:", "unknown key 'emit'",
                     "R0004.yaml:5:", "bad regex", "1 rule(s) valid, 3 error(s) in 3 file(s)"):
        assert fragment in result.output, fragment


def test_validate_passes_on_the_shipped_pack() -> None:
    result = runner.invoke(app, ["rules", "validate", str(ROOT / "rules" / "ttp")])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output


def test_validate_a_missing_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["rules", "validate", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "not a directory" in result.output


def test_list_shows_rules_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(GOOD.format(rule_id="R0001"))
    result = runner.invoke(app, ["rules", "list", "--rules", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "R0001" in result.output and "T1082" in result.output and "enabled" in result.output
    assert "1 rule(s)" in result.output
