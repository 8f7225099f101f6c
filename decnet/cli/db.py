"""`decnet-ttp db upgrade|current`: the database store's schema."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from decnet.cli.common import BadInput, cli_errors, console, db_url, run, safe_text
from decnet.ttp.constants import ENV_DB_URL

app = typer.Typer(help="Create and upgrade the database store's schema.",
                  no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", help=f"Database URL [env {ENV_DB_URL}; default sqlite+aiosqlite:///decnet-ttp.db]",
    show_default=False)]


@contextmanager
def _migration_notes_quiet() -> Iterator[None]:
    """MariaDB's notes on Alembic's own DDL (`Name 'alembic_version_pkc' ignored for
    PRIMARY key`), which the asyncmy driver logs as warnings, are not shown."""
    driver = logging.getLogger("asyncmy")
    level = driver.level
    driver.setLevel(logging.ERROR)
    try:
        yield
    finally:
        driver.setLevel(level)


def _shown(url: str) -> str:
    """The URL without its password; a URL that does not parse exits 2 (`cli_errors`)."""
    from sqlalchemy.engine import make_url  # here: every other command starts without it

    with cli_errors():
        return safe_text(make_url(url).render_as_string(hide_password=True))


@app.command()
def upgrade(
    db: DbOption = None,
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Apply the schema migrations (creates the tables on an empty database)."""
    from alembic.util import CommandError  # Alembic and SQLAlchemy load for `db` only

    from decnet.ttp.store.sql import migrate

    url = db_url(db)
    shown = _shown(url)
    with cli_errors(f"upgrading {shown} failed"), _migration_notes_quiet():
        try:
            before = run(migrate.current(url))
            after = run(migrate.upgrade(url, revision))
        except CommandError as exc:  # e.g. an unknown --revision
            raise BadInput(str(exc)) from None
    if before == after:
        console.print(f"{shown}: already at schema revision {after}", highlight=False,
                      markup=False)
    else:
        console.print(f"{shown}: schema upgraded from {before or 'nothing'} to {after}",
                      highlight=False, markup=False)


@app.command()
def current(db: DbOption = None) -> None:
    """Show the schema revision of the database (exit 1 when it needs an upgrade)."""
    from decnet.ttp.store.sql import migrate  # as in `upgrade`

    url = db_url(db)
    shown = _shown(url)
    with cli_errors(f"reading {shown} failed"):
        revision = run(migrate.current(url))
    head = migrate.head()
    if revision == head:
        console.print(f"{revision} (head)", highlight=False, markup=False)
        return
    console.print(f"{revision or 'no schema'} (this version needs {head}; run "
                  f"decnet-ttp db upgrade --db {shown})", highlight=False, markup=False)
    raise typer.Exit(1)
