"""`decnet-ttp rules test`: failures shown with their events, escaped; exit status."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from decnet.cli.app import app

runner = CliRunner()

RULE = """\
rule_id: {rule_id}
rule_version: 1
name: uname
applies_to: [command]
match: {{pattern: '\\buname\\b'}}
emits: [{{tactic: TA0007, technique_id: T1082, confidence: 0.5}}]
"""


def write(directory: Path, rule_id: str, tests: str) -> None:
    (directory / f"{rule_id}.yaml").write_text(RULE.format(rule_id=rule_id) + tests)


def invoke(directory: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["rules", "test", str(directory)], terminal_width=300)
    return result.exit_code, result.output


def test_all_passing_exits_0_with_a_summary(tmp_path: Path) -> None:
    write(tmp_path, "R0001", "tests:\n  fires:\n    - event: {source_kind: command, "
                             "payload: {command_text: uname -a}}\n")
    write(tmp_path, "R0002", "")
    code, output = invoke(tmp_path)
    assert code == 0, output
    assert output.strip() == ("1 rule(s) tested, 1 case(s): 1 passed, 0 failed; "
                              "1 rule(s) without tests")


def test_a_failure_shows_where_why_the_event_and_what_fired(tmp_path: Path) -> None:
    write(tmp_path, "R0001", """\
tests:
  quiet:
    - event: {source_kind: command,
              payload: {command_text: "uname\\e]0;owned\\a\\e[2J\\u202e\\x9b"}}
""")
    code, output = invoke(tmp_path)
    assert code == 1
    lines = output.splitlines()
    assert lines[0] == (f"FAIL R0001 quiet[0] {tmp_path / 'R0001.yaml'}:9: "
                        "fired on an event it must leave alone")
    assert lines[1] == ('  event: {"source_kind":"command","payload":{"command_text":'
                        '"uname\\u001b]0;owned\\u0007\\u001b[2J\\u202e\\u009b"},'
                        '"source_id":"test-R0001-quiet-0"}')
    assert lines[2] == "  fired: T1082 (TA0007)"
    assert "\x1b" not in output and "\x9b" not in output and "\u202e" not in output
    assert lines[-1].endswith("0 passed, 1 failed; 0 rule(s) without tests")


def test_a_bad_rule_file_is_reported_and_fails_the_run(tmp_path: Path) -> None:
    write(tmp_path, "R0001", "tests:\n  fires:\n    - {source_kind: command}\n")
    code, output = invoke(tmp_path)
    assert code == 1
    assert "R0001.yaml:9:" in output and "[tests.fires.0]" in output
    assert output.splitlines()[-1].endswith("; 1 rule error(s)")


def test_a_missing_directory_is_bad_input(tmp_path: Path) -> None:
    code, _ = invoke(tmp_path / "nope")
    assert code == 2


def test_rules_validate_reports_a_malformed_tests_block(tmp_path: Path) -> None:
    write(tmp_path, "R0001", "tests:\n  fires:\n    - event: {source_kind: command}\n"
                             "      expect: [T1033]\n")
    result = runner.invoke(app, ["rules", "validate", str(tmp_path)], terminal_width=300)
    assert result.exit_code == 1
    assert "R0001.yaml:8:" in result.output
    assert "[tests]: fires.0.expect names T1033, which this rule does not emit" in result.output
