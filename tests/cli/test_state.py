"""`decnet-ttp state …` and `decnet-ttp db …` against a SQLite file and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Text
from typer.testing import CliRunner

from decnet.cli import db as db_cli
from decnet.cli import state as state_cli
from decnet.ttp.constants import MAX_STATE_BY_CHARS, MAX_STATE_REASON_BYTES
from decnet.ttp.store.base import StateName
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql import migrate
from decnet.ttp.store.sql.models import StateRow
from tests.ttp.store.databases import (
    create_server_database,
    drop_server_database,
    mariadb_url,
    postgres_url,
    require,
)

runner = CliRunner()
#: A time within the 366-day TTL cap, whole seconds, `Z`.
UNTIL = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()[:-6] + "Z"


@pytest.fixture(params=["sqlite-file", pytest.param("postgresql", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema), sync fixture: the CLI runs its own event loops."""
    if request.param == "sqlite-file":
        yield f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
        return
    if request.param == "postgresql":
        base = postgres_url()
        require("PostgreSQL", base)
    else:
        base = mariadb_url()
        require("MariaDB", base)
    url = asyncio.run(create_server_database(base))
    try:
        yield url
    finally:
        asyncio.run(drop_server_database(url))


@pytest.fixture
def db(empty_db: str) -> str:
    result = runner.invoke(db_cli.app, ["upgrade", "--db", empty_db])
    assert result.exit_code == 0, result.output
    return empty_db


def state_of(url: str, rule_id: str) -> object:
    async def read() -> object:
        store = DatabaseRuleStore(url)
        try:
            return await store.get_state(rule_id)
        finally:
            await store.stop()

    return asyncio.run(read())


def test_db_upgrade_and_current(empty_db: str) -> None:
    result = runner.invoke(db_cli.app, ["current", "--db", empty_db])
    assert result.exit_code == 1
    assert "no schema" in result.output and "decnet-ttp db upgrade" in result.output
    result = runner.invoke(db_cli.app, ["upgrade", "--db", empty_db])
    assert result.exit_code == 0, result.output
    assert "upgraded from nothing to 0004" in result.output
    result = runner.invoke(db_cli.app, ["upgrade", "--db", empty_db])
    assert "already at schema revision 0004" in result.output
    result = runner.invoke(db_cli.app, ["current", "--db", empty_db])
    assert result.exit_code == 0 and "0004 (head)" in result.output


def test_state_commands_on_an_unmigrated_database_name_the_upgrade(empty_db: str) -> None:
    result = runner.invoke(state_cli.app, ["list", "--db", empty_db])
    assert result.exit_code == 1
    assert "decnet-ttp db upgrade --db" in result.output


def test_set_get_list_clear(db: str) -> None:
    result = runner.invoke(state_cli.app, [
        "set", "R0007", "disabled", "--for", "4h", "--reason", "noisy on decky-3",
        "--by", "alice", "--db", db])
    assert result.exit_code == 0, result.output
    assert "R0007: disabled" in result.output and "in 3h 59m" in result.output
    assert "[set by alice at " in result.output
    state = state_of(db, "R0007")
    assert state.state is StateName.DISABLED  # type: ignore[attr-defined]
    assert state.set_by == "alice"  # type: ignore[attr-defined]
    remaining = state.expires_at - datetime.now(UTC)  # type: ignore[attr-defined]
    assert timedelta(hours=3, minutes=58) < remaining <= timedelta(hours=4)

    result = runner.invoke(state_cli.app, [
        "set", "R0008", "clipped", "--confidence-max", "0.5", "--until", UNTIL,
        "--reason", "too eager [bold]x[/bold]", "--db", db], env={"USER": "bob"})
    assert result.exit_code == 0, result.output
    assert state_of(db, "R0008").set_by == "bob"  # type: ignore[attr-defined]

    result = runner.invoke(state_cli.app, ["get", "R0008", "--json", "--db", db])
    assert result.exit_code == 0
    body = json.loads(result.output)
    assert body["state"] == "clipped" and body["confidence_max"] == 0.5
    assert body["expires_at"].startswith(UNTIL[:-1])

    result = runner.invoke(state_cli.app, ["list", "--db", db], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "R0007" in result.output and "R0008" in result.output
    assert f"{UNTIL[:-1]}+00:00" in result.output
    assert "2 state(s) set" in result.output
    assert "[bold]x[/bold]" in result.output  # operator text is shown, never rendered

    result = runner.invoke(state_cli.app, ["clear", "R0007", "--by", "alice", "--db", db])
    assert result.exit_code == 0
    result = runner.invoke(state_cli.app, ["list", "--json", "--db", db])
    assert [row["rule_id"] for row in json.loads(result.output)] == ["R0008"]
    result = runner.invoke(state_cli.app, ["get", "R0007", "--db", db])
    assert "R0007: enabled" in result.output


def test_database_url_from_the_environment(db: str) -> None:
    result = runner.invoke(state_cli.app, ["set", "R0001", "disabled", "--reason", "x"],
                           env={"DECNET_TTP_DB_URL": db})
    assert result.exit_code == 0, result.output
    assert state_of(db, "R0001").state is StateName.DISABLED  # type: ignore[attr-defined]


@pytest.mark.parametrize(("args", "message"), [
    (["set", "R0001", "disabled", "--for", "4x", "--reason", "r"], "invalid duration"),
    (["set", "R0001", "disabled", "--until", "2020-01-01T00:00Z", "--reason", "r"],
     "in the past"),
    (["set", "R0001", "disabled", "--until", "2099-01-01T00:00", "--reason", "r"],
     "no UTC offset"),
    (["set", "R0001", "disabled", "--for", "4h", "--until", "2099-01-01T00:00Z",
      "--reason", "r"], "not both"),
    (["set", "R0001", "clipped", "--reason", "r"], "--confidence-max"),
    (["set", "R0001", "clipped", "--confidence-max", "1.5", "--reason", "r"], "[0, 1]"),
    (["set", "R0001", "disabled", "--confidence-max", "0.5", "--reason", "r"],
     "only to the clipped"),
    (["set", "R1.*", "disabled", "--reason", "r"], "invalid rule id"),
    (["set", "R0001", "disabled", "--reason", " "], "must say why"),
    (["get", "../etc"], "invalid rule id"),
])
def test_bad_input_exits_2_with_a_reason(db: str, args: list[str], message: str) -> None:
    result = runner.invoke(state_cli.app, [*args, "--db", db], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert state_of(db, "R0001").state is StateName.ENABLED  # type: ignore[attr-defined]


def test_the_cli_limits_are_the_column_widths() -> None:
    columns = StateRow.__table__.c
    assert columns.set_by.type.length == MAX_STATE_BY_CHARS
    assert isinstance(columns.reason.type, Text) and columns.reason.type.length is None
    assert MAX_STATE_REASON_BYTES == 65_535  # TEXT on MariaDB/MySQL, the tightest


def test_by_and_reason_that_fit_the_columns_are_stored(db: str) -> None:
    by = "b" * MAX_STATE_BY_CHARS
    reason = "é" * (MAX_STATE_REASON_BYTES // 2)
    result = runner.invoke(state_cli.app, ["set", "R0001", "disabled", "--reason", reason,
                                           "--by", by, "--db", db])
    assert result.exit_code == 0, result.output
    state = state_of(db, "R0001")
    assert state.set_by == by and state.reason == reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(("args", "message"), [
    (["set", "R0001", "disabled", "--reason", "r", "--by", "b" * (MAX_STATE_BY_CHARS + 1)],
     f"--by is 256 characters long; at most {MAX_STATE_BY_CHARS}"),
    (["set", "R0001", "disabled", "--reason", "r", "--by", "é" * (MAX_STATE_BY_CHARS + 1)],
     "--by is 256 characters long"),
    (["set", "R0001", "disabled", "--reason", "r" * (MAX_STATE_REASON_BYTES + 1)],
     "--reason is 65,536 bytes long; at most 65,535"),
    (["set", "R0001", "disabled", "--reason", "é" * (MAX_STATE_REASON_BYTES // 2 + 1)],
     "--reason is 65,536 bytes long"),
    (["set", "R0001", "disabled", "--reason", "r\udcff"], "--reason is not valid UTF-8"),
    (["clear", "R0001", "--by", "b" * (MAX_STATE_BY_CHARS + 1)], "--by is 256 characters"),
])
def test_by_and_reason_longer_than_their_columns_exit_2(db: str, args: list[str],
                                                        message: str) -> None:
    runner.invoke(state_cli.app, ["set", "R0001", "disabled", "--reason", "before", "--db", db])
    result = runner.invoke(state_cli.app, [*args, "--db", db])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert message in result.stderr
    assert state_of(db, "R0001").reason == "before"  # type: ignore[attr-defined]


def test_the_default_by_is_checked_too(db: str) -> None:
    result = runner.invoke(state_cli.app, ["set", "R0001", "disabled", "--reason", "r",
                                           "--db", db], env={"USER": "u" * 300})
    assert result.exit_code == 2 and "--by is 300 characters long" in result.stderr


def test_operator_text_is_shown_verbatim(db: str) -> None:
    hostile = "[/]x [bold]y[/bold] \\"
    result = runner.invoke(state_cli.app, [
        "set", "R0001", "clipped", "--confidence-max", "0.5", "--reason", hostile,
        "--by", hostile, "--db", db])
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"— {hostile} [set by {hostile} at " in result.output
    for command in (["get", "R0001"], ["list"]):
        result = runner.invoke(state_cli.app, [*command, "--db", db], env={"COLUMNS": "300"})
        assert result.exit_code == 0, (result.output, result.exception)
        assert hostile in result.output
    result = runner.invoke(state_cli.app, ["clear", "R0001", "--by", hostile, "--db", db])
    assert result.exit_code == 0 and f"(cleared by {hostile})" in result.output


TERMINAL_ATTACK = "\x1b[2J\x1b]8;;http://evil/\x07link\x1b]8;;\x07\x9b31m\u202eevil\nforged"


def test_terminal_escapes_in_state_text_are_shown_not_acted_on(db: str) -> None:
    result = runner.invoke(state_cli.app, [
        "set", "R0001", "disabled", "--for", "4h", "--reason", TERMINAL_ATTACK,
        "--by", TERMINAL_ATTACK, "--db", db], env={"COLUMNS": "400"})
    assert result.exit_code == 0, (result.output, result.exception)
    assert state_of(db, "R0001").reason == TERMINAL_ATTACK  # type: ignore[attr-defined]
    shown = "\\x1b[2J\\x1b]8;;http://evil/\\x07link"
    for command in (["get", "R0001"], ["list"], ["get", "R0001", "--json"],
                    ["list", "--json"]):
        result = runner.invoke(state_cli.app, [*command, "--db", db], env={"COLUMNS": "400"})
        assert result.exit_code == 0, (result.output, result.exception)
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in result.output, command
        if "--json" not in command:
            assert shown in result.output and "\\u202eevil\\x0aforged" in result.output
    result = runner.invoke(state_cli.app, ["clear", "R0001", "--by", TERMINAL_ATTACK,
                                           "--db", db])
    assert result.exit_code == 0 and "\x1b" not in result.output


def test_ttls_that_would_expire_at_once_or_past_a_year_exit_2(db: str) -> None:
    for args in (["--for", "0.0000001s"], ["--until", "2999-01-01T00:00Z"]):
        result = runner.invoke(state_cli.app, ["set", "R0001", "disabled", *args,
                                               "--reason", "r", "--db", db])
        assert result.exit_code == 2, result.output
        assert "enabled" not in result.output
        assert state_of(db, "R0001").state is StateName.ENABLED  # type: ignore[attr-defined]


def test_db_upgrade_prints_its_result_only(empty_db: str) -> None:
    from decnet.cli.app import app

    result = runner.invoke(app, ["db", "upgrade", "--db", empty_db])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.count("\n") == 1
    assert f"upgraded from nothing to {migrate.head()}" in result.stdout


def test_a_store_failure_exits_1_with_the_reason(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'rules.db'}"
    result = runner.invoke(state_cli.app, ["list", "--db", url])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_state_get_reports_an_unreachable_database_instead_of_guessing() -> None:
    """An operator must never be told "enabled" because the database is away."""
    result = runner.invoke(state_cli.app, ["get", "R0001", "--db",
                                           "postgresql+asyncpg://postgres@127.0.0.1:1/test"])
    assert result.exit_code == 1, result.output
    assert "enabled" not in result.output


def test_scoped_set_list_clear_and_history(db: str) -> None:
    def cli(*args: str) -> str:
        result = runner.invoke(state_cli.app, [*args, "--db", db], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output

    cli("set", "R0007", "disabled", "--for", "4h", "--reason", "noisy here",
        "--scope", "decky=decky-03,decky-07", "--by", "alice")
    cli("set", "R0007", "clipped", "--confidence-max", "0.2", "--reason", "sensor",
        "--scope", "sensor=s1", "--by", "alice")
    cli("set", "R0007", "disabled", "--reason", "everywhere", "--by", "bob")
    listed = json.loads(cli("list", "--json"))
    assert [(row["rule_id"], row["scope"], row["state"]) for row in listed] == [
        ("R0007", None, "disabled"), ("R0007", "decky=decky-03,decky-07", "disabled"),
        ("R0007", "sensor=s1", "clipped")]
    shown = json.loads(cli("get", "R0007", "--json"))
    assert [item["deckies"] for item in shown["scopes"]] == [["decky-03", "decky-07"], []]

    assert "R0007 [sensor=s1]: enabled (cleared by carol)" in cli(
        "clear", "R0007", "--scope", "sensor=s1", "--by", "carol", "--reason", "tuned")
    assert [row["scope"] for row in json.loads(cli("list", "--json"))] == [
        None, "decky=decky-03,decky-07"]
    cli("clear", "R0007", "--all-scopes", "--by", "carol")
    assert json.loads(cli("list", "--json")) == []

    entries = json.loads(cli("history", "R0007", "--json"))
    assert [(e["action"], e["scope"], e["by"]) for e in entries] == [
        ("set", "decky=decky-03,decky-07", "alice"), ("set", "sensor=s1", "alice"),
        ("set", None, "bob"), ("clear", "sensor=s1", "carol"), ("clear", None, "carol"),
        ("clear", "decky=decky-03,decky-07", "carol")]
    tuned = entries[3]
    assert tuned["reason"] == "tuned" and tuned["new"] is None
    assert tuned["old"]["state"] == "clipped" and tuned["via"]
    assert set(entries[0]) == {"rule_id", "action", "scope", "old", "new", "by", "reason",
                               "at", "via"}
    assert json.loads(cli("history", "--since", "2099-01-01T00:00Z", "--json")) == []
    assert len(json.loads(cli("history", "--since", "1h", "--json"))) == 6
    assert "6 change(s)" in cli("history")


@pytest.mark.parametrize(("args", "message"), [
    (["set", "R1", "disabled", "--reason", "x", "--scope", "host=a"], "invalid scope"),
    (["set", "R1", "disabled", "--reason", "x", "--scope", "decky=a b"], "invalid scope value"),
    (["set", "R1", "enabled", "--reason", "x", "--scope", "decky=a"], "state clear"),
    (["clear", "R1", "--scope", "decky=a", "--all-scopes"], "not both"),
    (["history", "--since", "yesterday-ish"], "--since"),
])
def test_bad_scopes_exit_2(db: str, args: list[str], message: str) -> None:
    result = runner.invoke(state_cli.app, [*args, "--db", db])
    assert result.exit_code == 2, result.output
    assert message in result.output
