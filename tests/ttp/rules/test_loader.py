"""Directory loading collects every error; two files for one rule is an error."""

from __future__ import annotations

from pathlib import Path

from decnet.ttp.rules.loader import is_rule_file_name, load_directory

RULE = """\
rule_id: {rule_id}
rule_version: 1
name: n_{rule_id}
applies_to: [command]
match: {{pattern: 'uname'}}
emits: [{{tactic: TA0007, technique_id: T1082, confidence: 0.5}}]
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_error_of_every_file_is_collected(tmp_path: Path) -> None:
    write(tmp_path, "R0001.yaml", RULE.format(rule_id="R0001"))
    write(tmp_path, "R0002.yaml", RULE.format(rule_id="R0002").replace("TA0007", "TA9"))
    write(tmp_path, "R0003.yaml", RULE.format(rule_id="R0003") + "emit: []\n")
    write(tmp_path, "R0004.yml", "rule_id: [unclosed\n")
    write(tmp_path, "R0005.yaml", RULE.format(rule_id="R0099"))
    result = load_directory(tmp_path)
    assert set(result.rules) == {"R0001"}
    files = sorted(Path(e.file).name for e in result.errors)
    assert files == ["R0002.yaml", "R0003.yaml", "R0004.yml", "R0005.yaml"]
    assert all(e.reason for e in result.errors)


def test_two_files_claiming_one_rule_is_an_error_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "R0007.yaml", RULE.format(rule_id="R0007"))
    write(tmp_path, "R0007.yml", RULE.format(rule_id="R0007"))
    result = load_directory(tmp_path)
    assert "R0007" not in result.rules
    [error] = result.errors
    assert "R0007.yaml" in error.reason and "R0007.yml" in error.reason


def test_scratch_files_are_not_rule_files(tmp_path: Path) -> None:
    for name in (".R0001.yaml.swp", "4913", "R0001.yaml~", ".#R0001.yaml", "#R0001.yaml#",
                 "R0001.yaml.off", "README.md", ".hidden.yaml"):
        assert not is_rule_file_name(name), name
        write(tmp_path, name, "garbage: [")
    assert is_rule_file_name("R0001.yaml") and is_rule_file_name("R0001.yml")
    result = load_directory(tmp_path)
    assert result.rules == {} and result.errors == []


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    import pytest

    from decnet.ttp.errors import RuleSetError

    with pytest.raises(RuleSetError, match="does not exist"):
        load_directory(tmp_path / "nope")


def test_the_shipped_pack_loads_cleanly() -> None:
    pack = Path(__file__).resolve().parents[3] / "rules" / "ttp"
    result = load_directory(pack)
    assert result.errors == []
    assert len(result.rules) >= 40


def test_a_fifo_is_reported_by_validate(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "R0009.yaml")
    result = load_directory(tmp_path)
    [error] = result.errors
    assert "not a regular file" in error.reason
