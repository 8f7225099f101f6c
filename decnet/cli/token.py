"""`decnet-ttp token create|list|revoke`: bearer tokens of the master's admin API."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import orjson
import typer
from rich.table import Table
from rich.text import Text

from decnet.cli.common import BadInput, cli_errors, console, db_url, run, safe_text
from decnet.cli.durations import parse_duration, parse_moment
from decnet.ttp.constants import ENV_DB_URL, TOKEN_NAME_RE, TOKEN_PREFIX
from decnet.ttp.store.sql.repository import RuleRepository
from decnet.ttp.store.sql.tokens import TokenInfo, TokenTable
from decnet.vocabulary import utcnow

T = TypeVar("T")

app = typer.Typer(help="Bearer tokens of the admin API (decnet-ttp master --http).",
                  no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", help=f"Database URL [env {ENV_DB_URL}; default sqlite+aiosqlite:///decnet-ttp.db]",
    show_default=False)]
NameArg = Annotated[str, typer.Option("--name", help="Who or what holds it, e.g. soc-console",
                                      show_default=False)]


class Role(enum.StrEnum):
    viewer = "viewer"
    admin = "admin"


def new_token() -> str:
    """256 random bits, URL-safe, with a recognisable prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _name(name: str) -> str:
    if not TOKEN_NAME_RE.fullmatch(name):
        raise BadInput(f"invalid --name {name!r}: expected [A-Za-z0-9_.@-]{{1,64}}")
    return name


def _with_tokens(url: str, action: Callable[[TokenTable], Awaitable[T]]) -> T:
    async def go() -> T:
        repo = RuleRepository(url)
        try:
            await repo.connect()
            return await action(TokenTable(repo))
        finally:
            await repo.dispose()

    return run(go())


def _expiry(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return utcnow() + parse_duration(text)
    except ValueError:
        return parse_moment(text)


@app.command()
def create(
    name: NameArg,
    role: Annotated[Role, typer.Option("--role", help="viewer (reads) or admin (writes too)",
                                       show_default=False)],
    expires: Annotated[str | None, typer.Option(
        "--expires", help="A duration (90d) or an ISO 8601 time; default: never",
        show_default=False)] = None,
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create a token and print it once, alone on stdout (only its SHA-256 is stored)."""
    with cli_errors():
        holder = _name(name)
        expires_at = _expiry(expires)
        token = new_token()
        info = _with_tokens(db_url(db), lambda table: table.create(holder, role.value, token,
                                                                   expires_at))
    if as_json:
        print(orjson.dumps({"name": info.name, "role": info.role, "token": token,
                            "expires_at": _iso(info.expires_at)}).decode())
    else:
        print(token)


@app.command()
def revoke(name: NameArg, db: DbOption = None) -> None:
    """Revoke a token: it stops working at once (its name stays taken)."""
    with cli_errors():
        holder = _name(name)
        done = _with_tokens(db_url(db), lambda table: table.revoke(holder))
        if not done:
            raise BadInput(f"no live token named {holder!r}")
    console.print(safe_text(f"token {holder} revoked"), highlight=False, markup=False)


@app.command("list")
def list_tokens(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Every token: name, role, created, expires, revoked (never the token)."""
    with cli_errors():
        tokens: list[TokenInfo] = _with_tokens(db_url(db), lambda table: table.list_tokens())
    if as_json:
        print(orjson.dumps([{"name": t.name, "role": t.role,
                             "created_at": _iso(t.created_at),
                             "expires_at": _iso(t.expires_at),
                             "revoked_at": _iso(t.revoked_at)} for t in tokens]).decode())
        return
    table = Table()
    for column in ("name", "role", "created", "expires", "revoked"):
        table.add_column(column, overflow="fold")
    for t in tokens:
        table.add_row(*(Text(safe_text(cell)) for cell in (
            t.name, t.role, _iso(t.created_at) or "", _iso(t.expires_at) or "never",
            _iso(t.revoked_at) or "")))
    console.print(table)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
