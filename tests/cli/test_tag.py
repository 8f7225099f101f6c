"""`decnet-ttp tag`: streams events to tags, reports bad lines, never dies on them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from decnet.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

RULE = """\
rule_id: R0001
rule_version: 1
name: uname
applies_to: [command]
match: {pattern: '\\buname\\s+-a\\b'}
emits:
  - {tactic: TA0007, technique_id: T1082, confidence: 0.5}
evidence_fields: [command_text]
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "R0001.yaml").write_text(RULE)
    return directory


def event(n: int, command: str) -> bytes:
    return orjson.dumps({"source_kind": "command", "source_id": f"c{n}",
                         "payload": {"command_text": command, "user": "root"}})


def test_tags_are_written_one_per_line(tmp_path: Path, rules_dir: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([event(1, "uname -a"), event(2, "ls"),
                                   event(3, "uname -a && id")]) + b"\n")
    out = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["tag", str(events), "-o", str(out), "--rules", str(rules_dir)])
    assert result.exit_code == 0, result.output
    tags = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [t["source_id"] for t in tags] == ["c1", "c3"]
    assert tags[0]["technique_id"] == "T1082"
    assert tags[0]["evidence"] == {"command_text": "uname -a", "user": "root"}
    assert "3 events" in result.output and "2 tags" in result.output


def test_rules_dir_from_the_environment(tmp_path: Path, rules_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECNET_TTP_RULES_DIR", str(rules_dir))
    events = tmp_path / "events.jsonl"
    events.write_bytes(event(1, "uname -a") + b"\n")
    result = runner.invoke(app, ["tag", str(events)])
    assert result.exit_code == 0, result.output
    assert b'"rule_id":"R0001"' in result.stdout_bytes


def test_malformed_lines_are_reported_and_skipped(tmp_path: Path, rules_dir: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([
        b"{not json", b"[1, 2]", b'{"source_kind": "command"}', b"",
        event(5, "uname -a"),
    ]) + b"\n")
    out = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["tag", str(events), "-o", str(out), "--rules", str(rules_dir)])
    assert result.exit_code == 0, result.output
    assert len(out.read_bytes().splitlines()) == 1
    assert "3 malformed line(s)" in result.output
    assert "line 1" in result.output and "line 3: event.source_id" in result.output


def test_a_bad_rule_file_is_reported_and_the_rest_run(tmp_path: Path, rules_dir: Path) -> None:
    (rules_dir / "R0002.yaml").write_text("rule_id: R0002\nemit: []\n")
    events = tmp_path / "events.jsonl"
    events.write_bytes(event(1, "uname -a") + b"\n")
    out = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["tag", str(events), "-o", str(out), "--rules", str(rules_dir)])
    assert result.exit_code == 0
    assert "R0002.yaml" in result.output
    assert len(out.read_bytes().splitlines()) == 1
    strict = runner.invoke(app, ["tag", str(events), "--strict", "--rules", str(rules_dir)])
    assert strict.exit_code == 1


def test_missing_inputs_are_clear_errors(tmp_path: Path, rules_dir: Path) -> None:
    result = runner.invoke(app, ["tag", str(tmp_path / "nope.jsonl"), "--rules", str(rules_dir)])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["tag", str(tmp_path / "x"), "--rules", str(tmp_path / "no")])
    assert result.exit_code == 2 and "rules directory" in result.output


def test_the_demo_runs_on_the_shipped_pack(tmp_path: Path) -> None:
    out = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["tag", str(ROOT / "examples" / "events.jsonl"), "-o", str(out),
                                 "--rules", str(ROOT / "rules" / "ttp"), "--show", "5"])
    assert result.exit_code == 0, result.output
    tags = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(tags) > 100
    assert len({t["uuid"] for t in tags}) == len(tags)
    assert "Top techniques" in result.output
