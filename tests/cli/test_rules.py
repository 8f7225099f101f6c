"""`decnet-ttp rules validate|list`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decnet.cli.app import app
from decnet.ttp.errors import RuleSetError
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.impl.database import DatabaseRuleStore

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


def test_validate_prints_each_warning_once_and_readably(tmp_path: Path) -> None:
    rule = GOOD.format(rule_id="R0001").replace("'uname'", "'un(?<!x)ame'")
    (tmp_path / "R0001.yaml").write_text(rule)
    result = runner.invoke(app, ["rules", "validate", str(tmp_path)], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert result.output.count("un(?<!x)ame") == 1, result.output
    assert "lookbehind, which RE2 cannot run; it is searched by PCRE2" in result.output
    assert "1 warning(s)" in result.output


def test_validate_a_missing_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["rules", "validate", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a directory" in result.output


def test_list_shows_rules_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(GOOD.format(rule_id="R0001"))
    result = runner.invoke(app, ["rules", "list", "--rules", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "R0001" in result.output and "T1082" in result.output and "enabled" in result.output
    assert "1 rule(s)" in result.output


HOSTILE_NAME = "[/]x [bold red]y[/bold red] \\"


def lifter_rule(rule_id: str, kind: str, name: str = "brute force") -> str:
    return (GOOD.format(rule_id=rule_id).replace("{pattern: 'uname'}", f"{{kind: {kind!r}}}")
            .replace("name: uname", f"name: {name!r}"))


def test_lifter_names_are_validated_at_load_time() -> None:
    rule = compile_rule(lifter_rule("R0001", "lifter:brute_force.v2-x"), source="R0001.yaml")
    assert rule.lifter == "brute_force.v2-x"
    assert compile_rule(lifter_rule("R0001", "lifter:" + "a" * 64),
                        source="R0001.yaml").lifter == "a" * 64
    for name in ("[/]", "a b", "a/b", "é", "a" * 65, "x\n", "a:b", "*"):
        with pytest.raises(RuleSetError) as caught:
            compile_rule(lifter_rule("R0001", "lifter:" + name), source="R0001.yaml")
        (error,) = caught.value.errors
        assert error.field == "match.kind", name
        assert "invalid lifter name" in error.reason and error.line == 5, name
    with pytest.raises(RuleSetError) as caught:
        compile_rule(lifter_rule("R0001", "lifter:"), source="R0001.yaml")
    assert caught.value.errors[0].field == "match.kind"


def test_validate_reports_a_bad_lifter_name_verbatim(tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(lifter_rule("R0001", "lifter:[/]"))
    result = runner.invoke(app, ["rules", "validate", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1, (result.output, result.exception)
    assert "[match.kind]: invalid lifter name '[/]'" in result.output


def test_list_shows_rule_data_verbatim(tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(lifter_rule("R0001", "lifter:brute_force",
                                                     name=HOSTILE_NAME))
    (tmp_path / "R0002.yaml").write_text(lifter_rule("R0002", "lifter:[/]"))
    result = runner.invoke(app, ["rules", "list", "--rules", str(tmp_path)],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 0, (result.output, result.exception)
    assert HOSTILE_NAME in result.output and "lifter:brute_force" in result.output
    assert "invalid lifter name '[/]'" in result.output  # the bad rule is reported, not listed
    assert "1 rule(s)" in result.output


def test_list_shows_database_rules_verbatim(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
    assert runner.invoke(app, ["db", "upgrade", "--db", url]).exit_code == 0

    async def store_rule() -> None:
        store = DatabaseRuleStore(url)
        try:
            text = lifter_rule("R0001", "lifter:brute_force", name=HOSTILE_NAME)
            await store.upsert_rule(compile_rule(text, source="R0001.yaml"),
                                    source_path=None, updated_by="test")
            await store.set_state("R0001", RuleState(StateName.DISABLED, reason="[/]"), "[/]")
        finally:
            await store.stop()

    asyncio.run(store_rule())
    result = runner.invoke(app, ["rules", "list", "--db", url], env={"COLUMNS": "300"})
    assert result.exit_code == 0, (result.output, result.exception)
    assert HOSTILE_NAME in result.output and "lifter:brute_force" in result.output
    assert "disabled" in result.output


def test_paths_in_errors_are_shown_verbatim(tmp_path: Path) -> None:
    (tmp_path / "a[").mkdir()
    missing = tmp_path / "a[" / "][bold]nope"  # the path holds `[/]`
    for command in (["rules", "validate", str(missing)], ["rules", "list", "--rules",
                                                          str(missing)]):
        result = runner.invoke(app, command, env={"COLUMNS": "300"})
        assert result.exit_code == 2, (result.output, result.exception)
        assert f"error: {missing} is not a directory" in result.output
