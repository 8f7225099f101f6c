"""`decnet-ttp tag`: streams events to tags, reports bad lines, never dies on them."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from decnet.cli.app import app
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.jobs.tagging import tag_stream
from decnet.ttp.rules.loader import load_directory

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


HOSTILE = "[/]x [bold red]y[/bold red] [link=http://evil]z[/link] :skull: \\"


def test_show_prints_attacker_data_as_text_never_markup(tmp_path: Path,
                                                        rules_dir: Path) -> None:
    events = tmp_path / "[bold]events.jsonl"
    events.write_bytes(orjson.dumps({
        "source_kind": "command", "source_id": HOSTILE,
        "payload": {"command_text": f"uname -a {HOSTILE}"}}) + b"\n")
    (tmp_path / "a[").mkdir()
    out = tmp_path / "a[" / "]tags.jsonl"  # the path holds `[/]`
    result = runner.invoke(app, ["tag", str(events), "-o", str(out), "--rules", str(rules_dir),
                                 "--show", "5"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, (result.output, result.exception)
    assert HOSTILE in result.output  # the source_id, verbatim: no markup, no emoji
    assert f"uname -a {HOSTILE}"[:60] in result.output  # the evidence
    assert f"-> {out}" in result.output


def test_hostile_paths_are_shown_verbatim(tmp_path: Path, rules_dir: Path) -> None:
    (tmp_path / "a[").mkdir()
    missing = tmp_path / "a[" / "]nope.jsonl"  # the path holds `[/]`
    result = runner.invoke(app, ["tag", str(missing), "--rules", str(rules_dir)],
                           terminal_width=400)
    assert result.exit_code == 2 and f"events file {missing} does not exist" in result.output
    no_rules = tmp_path / "a[" / "]rules"
    result = runner.invoke(app, ["tag", str(missing), "--rules", str(no_rules)],
                           terminal_width=400)
    assert result.exit_code == 2 and f"rules directory {no_rules} does not exist" in result.output
    empty = tmp_path / "a[" / "][bold]empty"
    empty.mkdir()
    result = runner.invoke(app, ["tag", str(missing), "--rules", str(empty)],
                           terminal_width=400)
    assert result.exit_code == 1 and f"no usable rules in {empty}" in result.output


def test_a_line_over_the_cap_is_skipped_and_reported(tmp_path: Path, rules_dir: Path) -> None:
    events = tmp_path / "events.jsonl"
    huge = b'{"source_kind": "command", "source_id": "big", "payload": {"command_text": "' \
        + b"uname -a " * (3 * 1024 * 1024 // 9) + b'"}}'
    assert len(huge) > 3 * 1024 * 1024
    events.write_bytes(event(1, "uname -a") + b"\n" + huge + b"\n" + event(3, "uname -a")
                       + b"\n" + huge)  # the last one without a newline
    out = tmp_path / "tags.jsonl"
    result = runner.invoke(app, ["tag", str(events), "-o", str(out), "--rules", str(rules_dir)])
    assert result.exit_code == 0, result.output
    assert [orjson.loads(t)["source_id"] for t in out.read_bytes().splitlines()] == ["c1", "c3"]
    assert "2 malformed line(s)" in result.output
    assert "line 2: longer than 1 MiB, skipped" in result.output
    assert "line 4: longer than 1 MiB, skipped" in result.output


@pytest.mark.parametrize("tail", [b"", b"\n"])
def test_an_over_long_line_is_never_held_whole(tmp_path: Path, rules_dir: Path,
                                               tail: bytes) -> None:
    events = tmp_path / "events.jsonl"
    with events.open("wb") as handle:
        handle.write(b"x" * (3 * 1024 * 1024) + tail)
        handle.write(event(2, "uname -a") + b"\n")
    engine = RuleEngine(load_directory(rules_dir).rules.values())
    sink = io.BytesIO()
    read: list[int] = []
    tracemalloc.start()
    try:
        with events.open("rb") as source:
            summary = tag_stream(engine, source, sink, progress=read.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * 1024 * 1024, peak  # about twice the cap (1 MiB), never the whole line
    if tail:
        assert summary.bad_line_reasons == [("", 1, "longer than 1 MiB, skipped")]
        assert summary.events == 1 and summary.tags == 1
    else:  # no newline: the event is part of the over-long line
        assert summary.bad_line_reasons == [("", 1, "longer than 1 MiB, skipped")]
        assert summary.events == 0
    assert sum(read) == summary.bytes_read == events.stat().st_size


@pytest.mark.parametrize(("length", "bad"), [(99, False), (100, False), (101, True),
                                             (250, True)])
def test_the_cap_counts_the_line_without_its_newline(length: int, bad: bool) -> None:
    engine = RuleEngine([])
    line = b'{"source_kind": "command", "source_id": "c", "payload": {"x": "'
    line += b"y" * (length - len(line) - 3) + b'"}}'
    assert len(line) == length
    for body in (line + b"\n" + line + b"\n", line + b"\n" + line):
        summary = tag_stream(engine, io.BytesIO(body), io.BytesIO(), max_line_bytes=100)
        assert summary.bad_lines == (2 if bad else 0), (length, body[-1:])
        assert summary.events == (0 if bad else 2)
        assert summary.bytes_read == len(body)
        if bad:
            assert summary.bad_line_reasons[0] == ("", 1, "longer than 100 bytes, skipped")
