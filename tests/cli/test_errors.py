"""One error policy for the CLI: bad input exits 2, a database or IO failure exits 1, each
with a one-line reason on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from click.testing import Result
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from typer.testing import CliRunner

from decnet.cli.app import app
from decnet.cli.common import BadInput, cli_errors
from decnet.cli.durations import InputError
from decnet.ttp.errors import (
    ConfigError,
    InvalidRuleId,
    InvalidStateError,
    RuleSetError,
    SchemaOutdatedError,
    StoreError,
)

runner = CliRunner()

RULE = """\
rule_id: R0001
rule_version: 1
name: uname
applies_to: [command]
match: {pattern: 'uname'}
emits: [{tactic: TA0007, technique_id: T1082, confidence: 0.5}]
"""


def refused(result: Result, code: int, *fragments: str) -> None:
    """Exit `code`, one `error:` line on stderr holding every fragment, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# the policy itself ----------------------------------------------------------


def invoke_raising(exc: BaseException, context: str = "") -> Result:
    probe = typer.Typer()

    @probe.command()
    def boom() -> None:
        with cli_errors(context):
            raise exc

    return runner.invoke(probe, [])


@pytest.mark.parametrize("exc", [
    BadInput("bad"), InputError("bad"), ConfigError("bad"), InvalidRuleId("bad"),
    InvalidStateError("bad"), ArgumentError("bad"), NoSuchModuleError("bad"),
])
def test_bad_input_exits_2(exc: BaseException) -> None:
    refused(invoke_raising(exc), 2, "bad")


@pytest.mark.parametrize("exc", [
    StoreError("broken"), SchemaOutdatedError("broken"), FileNotFoundError("broken"),
    PermissionError("broken"), TimeoutError("broken"),
    OperationalError("SELECT 1", {}, Exception("broken")),
    RuleSetError([]),
])
def test_failures_exit_1(exc: BaseException) -> None:
    result = invoke_raising(exc)
    refused(result, 1)
    assert result.stderr.strip() != "error:"


def test_a_store_error_caused_by_the_url_is_bad_input() -> None:
    try:
        try:
            raise NoSuchModuleError("Can't load plugin: sqlalchemy.dialects:sqlite.nodriver")
        except NoSuchModuleError as cause:
            raise StoreError("cannot open the rule database: no driver") from cause
    except StoreError as exc:
        refused(invoke_raising(exc), 2, "no driver")


def test_the_message_is_one_escaped_line_with_its_context() -> None:
    result = invoke_raising(StoreError("[/]x [bold]y\nsecond line"), "reading db failed")
    refused(result, 1, "error: reading db failed: [/]x [bold]y second line")


def test_anything_else_is_a_bug_and_is_not_hidden() -> None:
    result = invoke_raising(KeyError("bug"))
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)


def test_exit_passes_through() -> None:
    result = invoke_raising(typer.Exit(3))
    assert result.exit_code == 3 and result.stderr == ""


# the known failures -----------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["state", "get", "R1", "--db", "not a url"],
    ["state", "list", "--db", "not a url"],
    ["state", "set", "R1", "disabled", "--reason", "x", "--db", "not a url"],
    ["state", "clear", "R1", "--db", "not a url"],
    ["rules", "list", "--db", "not a url"],
    ["db", "upgrade", "--db", "not a url"],
    ["db", "current", "--db", "not a url"],
])
def test_a_url_that_does_not_parse_exits_2(args: list[str]) -> None:
    refused(runner.invoke(app, args), 2, "invalid database URL")


@pytest.mark.parametrize("args", [
    ["state", "get", "R1"], ["rules", "list"], ["db", "upgrade"], ["db", "current"],
])
@pytest.mark.parametrize("url", ["postgresql+nodriver://db.invalid/x", "oracle://db.invalid/x",
                                 "nosuchdb://db.invalid/x"])
def test_an_unsupported_database_or_driver_exits_2(args: list[str], url: str) -> None:
    result = runner.invoke(app, [*args, "--db", url])
    refused(result, 2)
    assert "nodriver" in result.stderr or "unsupported database" in result.stderr \
        or "Can't load plugin" in result.stderr


def test_rules_list_on_a_database_without_schema_names_the_upgrade(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    refused(runner.invoke(app, ["rules", "list", "--db", url]), 1, "no schema",
            f"decnet-ttp db upgrade --db {url}")


@pytest.mark.parametrize("args", [
    ["state", "set", "R1", "disabled", "--reason", "x"], ["state", "clear", "R1"],
    ["state", "get", "R1"], ["state", "list"], ["rules", "list"],
])
def test_a_missing_sqlite_file_is_refused_and_never_created(tmp_path: Path,
                                                            args: list[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
    refused(runner.invoke(app, [*args, "--db", url]), 1, "there is no rule database at",
            f"decnet-ttp db upgrade --db {url}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("url", "driver"), [
    ("postgresql+psycopg2://db.invalid/x", "postgresql+psycopg2"),
    ("postgresql+psycopg://db.invalid/x", "postgresql+psycopg"),
    ("mysql+pymysql://db.invalid/x", "mysql+pymysql"),
    ("mysql+mysqldb://db.invalid/x", "mysql+mysqldb"),
    ("sqlite+pysqlite:///x.db", "sqlite+pysqlite"),
])
@pytest.mark.parametrize("args", [["state", "get", "R1"], ["db", "upgrade"]])
def test_a_sync_driver_is_one_line_and_exit_2(url: str, driver: str, args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--db", url])
    refused(result, 2, f"unsupported database driver '{driver}'")
    assert "ModuleNotFoundError" not in result.output


def test_db_upgrade_that_cannot_open_the_file_exits_1(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}"
    refused(runner.invoke(app, ["db", "upgrade", "--db", url]), 1, "upgrading", "failed")


def test_db_upgrade_to_an_unknown_revision_exits_2(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    refused(runner.invoke(app, ["db", "upgrade", "--db", url, "--revision", "nope"]), 2,
            "nope")


def test_db_hides_the_password_in_errors() -> None:
    url = "postgresql+nodriver://alice:s3cret@db.invalid/x"
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    refused(result, 2, make_url(url).render_as_string(hide_password=True))
    assert "s3cret" not in result.output


@pytest.mark.parametrize(("ttl", "fragment"), [
    (["--for", "99999999999999999999s"], "longer than 366 days"),
    (["--for", "1" * 400 + "s"], "longer than 366 days"),
    (["--until", "9999-12-31T23:00-05:00"], "out of range"),
])
def test_huge_ttls_are_refused_not_overflowed(tmp_path: Path, ttl: list[str],
                                              fragment: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'never-opened.db'}"
    result = runner.invoke(app, ["state", "set", "R1", "disabled", *ttl, "--reason", "x",
                                 "--db", url])
    refused(result, 2, fragment)
    assert not (tmp_path / "never-opened.db").exists()


def test_tag_to_an_output_that_cannot_be_created_exits_1(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "R0001.yaml").write_text(RULE)
    events = tmp_path / "events.jsonl"
    events.write_text('{"source_kind": "command", "source_id": "c1", '
                      '"payload": {"command_text": "uname -a"}}\n')
    target = tmp_path / "nonexistent" / "dir" / "x.jsonl"
    result = runner.invoke(app, ["tag", str(events), "-o", str(target), "--rules", str(rules)])
    refused(result, 1, "No such file or directory", str(target))
