"""`decnet-ttp token create|list|revoke` on a migrated SQLite file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decnet.cli import db as db_cli
from decnet.cli import token as token_cli
from decnet.ttp.store.sql.repository import RuleRepository
from decnet.ttp.store.sql.tokens import TokenTable, digest

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
    assert runner.invoke(db_cli.app, ["upgrade", "--db", url]).exit_code == 0
    return url


def find(url: str, token: str) -> object:
    async def go() -> object:
        repo = RuleRepository(url)
        try:
            return await TokenTable(repo).find(token)
        finally:
            await repo.dispose()

    return asyncio.run(go())


def test_create_prints_the_token_once_and_stores_only_its_digest(db: str, tmp_path: Path) -> None:
    result = runner.invoke(token_cli.app, ["create", "--role", "admin", "--name", "console",
                                           "--db", db])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith("dttp_") and len(token) > 40
    raw = (tmp_path / "rules.db").read_bytes()
    assert token.encode() not in raw and digest(token).encode() in raw
    found = find(db, token)
    assert found is not None and found.role == "admin"  # type: ignore[attr-defined]
    assert find(db, token + "x") is None

    listed = runner.invoke(token_cli.app, ["list", "--json", "--db", db])
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["role"], row["revoked_at"]) == ("console", "admin", None)
    assert token not in listed.stdout

    again = runner.invoke(token_cli.app, ["create", "--role", "viewer", "--name", "console",
                                          "--db", db])
    assert again.exit_code == 1 and "exists already" in again.output

    assert runner.invoke(token_cli.app, ["revoke", "--name", "console", "--db", db]
                         ).exit_code == 0
    assert find(db, token) is None
    gone = runner.invoke(token_cli.app, ["revoke", "--name", "console", "--db", db])
    assert gone.exit_code == 2 and "no live token" in gone.output


def test_json_and_expiry(db: str) -> None:
    result = runner.invoke(token_cli.app, ["create", "--role", "viewer", "--name", "ro",
                                           "--expires", "90d", "--json", "--db", db])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"name", "role", "token", "expires_at"}
    assert body["role"] == "viewer" and body["expires_at"]
    assert find(db, body["token"]) is not None


@pytest.mark.parametrize("args", [
    ["create", "--role", "root", "--name", "x"],
    ["create", "--role", "admin", "--name", "bad name"],
    ["create", "--role", "admin", "--name", "x", "--expires", "whenever"],
])
def test_bad_input_exits_2(db: str, args: list[str]) -> None:
    assert runner.invoke(token_cli.app, [*args, "--db", db]).exit_code == 2
