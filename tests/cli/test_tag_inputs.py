"""`decnet-ttp tag` on honeypot logs: formats, several inputs, gzip, stdin, --jobs,
the per-attacker summary, and the inputs it refuses."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from decnet.cli.app import app
from decnet.cli.tag import printable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "inputs"
runner = CliRunner()

RULES = {
    "R0001": """\
rule_id: R0001
rule_version: 1
name: uname
applies_to: [command]
match: {pattern: '\\buname\\b'}
emits:
  - {tactic: TA0007, technique_id: T1082, confidence: 0.5}
evidence_fields: [command_text]
""",
    "R0002": """\
rule_id: R0002
rule_version: 1
name: root_login
applies_to: [auth_attempt]
match: {pattern: '^(root|admin)$'}
emits:
  - {tactic: TA0006, technique_id: T1110, sub_technique_id: T1110.001, confidence: 0.3}
evidence_fields: [username, service]
""",
    "R0003": """\
rule_id: R0003
rule_version: 1
name: tunnelled_ip_lookup
applies_to: [http_request]
match: {pattern: '^/json/'}
emits:
  - {tactic: TA0011, technique_id: T1090, confidence: 0.6}
evidence_fields: [host, user_agent]
""",
    "R0004": """\
rule_id: R0004
rule_version: 1
name: wget
applies_to: [command]
match: {pattern: '\\bwget\\s'}
emits:
  - {tactic: TA0011, technique_id: T1105, confidence: 0.8}
evidence_fields: [deep]
""",
}


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    for rule_id, text in RULES.items():
        (directory / f"{rule_id}.yaml").write_text(text)
    return directory


def run(*args: str, rules: Path, stdin: bytes | None = None) -> tuple[int, str]:
    result = runner.invoke(app, ["tag", *args, "--rules", str(rules)], input=stdin,
                           env={"COLUMNS": "300"})
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.output


def tags_of(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_cowrie_logs_tag_with_address_session_and_sensor(tmp_path: Path,
                                                         rules_dir: Path) -> None:
    out = tmp_path / "tags.jsonl"
    code, output = run(str(FIXTURES / "cowrie-2018.json"), str(FIXTURES / "cowrie-2021.json"),
                       "--format", "cowrie", "-o", str(out), rules=rules_dir)
    assert code == 0, output
    tags = tags_of(out)
    assert [t["rule_id"] for t in tags] == ["R0002", "R0002", "R0001", "R0004", "R0002",
                                            "R0002", "R0002", "R0003"]
    first = tags[0]
    assert (first["src_ip"], first["session_id"], first["sensor"]) == (
        "198.51.100.23", "a1b2c3d4e5f6", "hp-fra-01")
    assert first["evidence"] == {"username": "admin", "service": "ssh"}
    assert "Top source addresses" in output and "Top sessions" in output
    assert "198.51.100.23" in output and "T1110.001" in output


def test_a_rerun_gives_the_same_tags(tmp_path: Path, rules_dir: Path) -> None:
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for out in outs:
        assert run(str(FIXTURES / "cowrie-2021.json"), "-o", str(out), rules=rules_dir)[0] == 0
    assert outs[0].read_bytes() == outs[1].read_bytes() != b""


def test_auto_gzip_and_stdin(tmp_path: Path, rules_dir: Path) -> None:
    packed = tmp_path / "cowrie.json.1"  # compressed, whatever its name
    packed.write_bytes(gzip.compress((FIXTURES / "cowrie-2018.json").read_bytes()))
    out = tmp_path / "tags.jsonl"
    stdin = (FIXTURES / "opencanary.json").read_bytes()
    code, output = run(str(packed), "-", "-o", str(out), rules=rules_dir, stdin=stdin)
    assert code == 0, output
    tags = tags_of(out)
    assert {t["source_id"].split(":")[0] for t in tags} == {"cowrie", "opencanary"}
    assert "record(s) of unknown kinds skipped: logtype 17001 (1)" in output


def test_unknown_event_ids_are_listed(tmp_path: Path, rules_dir: Path) -> None:
    code, output = run(str(FIXTURES / "cowrie-2025.json"), "--format", "cowrie",
                       rules=rules_dir)
    assert code == 0
    assert "1 record(s) of unknown kinds skipped: cowrie.telnet.option (1)" in output


def test_jobs_give_the_same_tags_in_the_same_order(tmp_path: Path, rules_dir: Path) -> None:
    source = tmp_path / "big.json"
    lines = [line for name in ("cowrie-2018.json", "cowrie-2021.json", "cowrie-2025.json")
             for line in (FIXTURES / name).read_bytes().splitlines()]
    with source.open("wb") as handle:  # ~2 MB: several blocks per worker
        for n in range(200):
            for line in lines:
                record = orjson.loads(line)
                record["session"] = f"{record.get('session')}-{n}"
                handle.write(orjson.dumps(record) + b"\n")
            handle.write(b"{broken\n")
    outputs = []
    for jobs in ("1", "2", "3"):
        out = tmp_path / f"tags-{jobs}.jsonl"
        code, output = run(str(source), "--jobs", jobs, "-o", str(out), rules=rules_dir)
        assert code == 0, output
        assert "200 malformed line(s)" in output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    services = {t["evidence"].get("service") for t in map(orjson.loads, outputs[0].splitlines())
                if t["rule_id"] == "R0002"}
    assert services == {"ssh", "telnet"}  # logins completed from their session's connect


def test_an_output_that_is_an_input_is_refused(tmp_path: Path, rules_dir: Path) -> None:
    events = tmp_path / "events.json"
    original = (FIXTURES / "cowrie-2021.json").read_bytes()
    events.write_bytes(original)
    link = tmp_path / "link.json"
    link.symlink_to(events)
    hard = tmp_path / "hard.json"
    os.link(events, hard)
    for target in (events, link, hard):
        code, output = run(str(events), "-o", str(target), rules=rules_dir)
        assert code == 2, output
        assert "would be overwritten" in output
        assert events.read_bytes() == original
    code, output = run(str(link), "-o", str(events), rules=rules_dir)
    assert code == 2 and events.read_bytes() == original


def test_a_directory_is_named_as_one(tmp_path: Path, rules_dir: Path) -> None:
    code, output = run(str(tmp_path), rules=rules_dir)
    assert code == 2 and f"events file {tmp_path} is a directory" in output
    code, output = run(str(FIXTURES / "opencanary.json"), "-o", str(tmp_path), rules=rules_dir)
    assert code == 2 and "is a directory" in output


def test_an_unknown_format_is_bad_input(tmp_path: Path, rules_dir: Path) -> None:
    code, output = run(str(FIXTURES / "opencanary.json"), "--format", "syslog",
                       rules=rules_dir)
    assert code == 2 and "unknown --format 'syslog'" in output


ESCAPES = "\x1b[2J\x1b]8;;http://evil\x07link\x1b]8;;\x07\x9b31m\u202eevil"


def test_show_and_the_summary_escape_terminal_controls(tmp_path: Path,
                                                       rules_dir: Path) -> None:
    events = tmp_path / "events.json"
    events.write_bytes(orjson.dumps({
        "eventid": "cowrie.command.input", "input": f"uname {ESCAPES}",
        "session": ESCAPES, "src_ip": ESCAPES, "sensor": "s"}) + b"\n" + orjson.dumps({
        "source_kind": "command", "source_id": ESCAPES,
        "payload": {"command_text": f"uname -a {ESCAPES}"}}) + b"\n" + orjson.dumps({
        "eventid": f"cowrie.{ESCAPES}"}) + b"\n")
    out = tmp_path / "tags.jsonl"
    code, output = run(str(events), "-o", str(out), "--show", "5", rules=rules_dir)
    assert code == 0, output
    assert len(tags_of(out)) == 2
    for char in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert char not in output
    assert "\\x1b[2J" in output and "\\u202e" in output


def test_printable() -> None:
    assert printable("a\x1b[31mb\tc\u2066") == "a\\x1b[31mb\\x09c\\u2066"
    assert printable("plain ünïcode [bold]") == "plain ünïcode [bold]"
    assert printable(12) == "12"


def test_hostile_lines_cost_only_themselves(tmp_path: Path, rules_dir: Path) -> None:
    # evidence deeper than orjson writes (254 levels): the tag keeps it, cut and marked
    deep = b'{"source_kind": "command", "source_id": "deep", "payload": {"command_text": ' \
        b'"wget http://x/ ", "deep": ' + b'{"d": ' * 300 + b"1" + b"}" * 300 + b"}}"
    hostile = [
        b"[" * 5000 + b"]" * 5000,
        b'{"source_kind": "command", "source_id": "n", "timestamp": 1' + b"0" * 400 + b"}",
        b'{"source_kind": "command", "source_id": "s", "payload": {"command_text": '
        b'"uname \\ud800"}}',
        b'{"eventid": "cowrie.session.closed", "duration": 1' + b"0" * 400 + b"}",
        deep,
        b"\xff\xfe garbage",
    ]
    good = orjson.dumps({"source_kind": "command", "source_id": "ok",
                         "payload": {"command_text": "uname -a"}})
    events = tmp_path / "events.json"
    events.write_bytes(b"\n".join([*hostile, good]) + b"\n")
    out = tmp_path / "tags.jsonl"
    for jobs in ("1", "2"):
        code, output = run(str(events), "-o", str(out), "--jobs", jobs, rules=rules_dir)
        assert code == 0, output
        assert "Traceback" not in output
        tags = {t["source_id"]: t for t in tags_of(out)}
        assert "ok" in tags
        assert tags["deep"]["evidence_truncated"] is True
