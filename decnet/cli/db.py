"""`decnet-ttp db upgrade|current`: the database store's schema."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy.engine import make_url

from decnet.cli.common import console, db_url, err_console, run
from decnet.ttp.constants import ENV_DB_URL

app = typer.Typer(help="Create and upgrade the database store's schema.",
                  no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", help=f"Database URL [env {ENV_DB_URL}; default sqlite+aiosqlite:///decnet-ttp.db]",
    show_default=False)]


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@app.command()
def upgrade(
    db: DbOption = None,
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Apply the schema migrations (creates the tables on an empty database)."""
    from decnet.ttp.store.sql import migrate

    url = db_url(db)
    try:
        before = run(migrate.current(url))
        after = run(migrate.upgrade(url, revision))
    except Exception as exc:
        err_console.print(f"[red]error:[/] upgrading {_shown(url)} failed: "
                          f"{escape(str(exc))}",
                          highlight=False)
        raise typer.Exit(1) from None
    if before == after:
        console.print(f"{_shown(url)}: already at schema revision {after}", highlight=False,
                      markup=False)
    else:
        console.print(f"{_shown(url)}: schema upgraded from {before or 'nothing'} to {after}",
                      highlight=False, markup=False)


@app.command()
def current(db: DbOption = None) -> None:
    """Show the schema revision of the database (exit 1 when it needs an upgrade)."""
    from decnet.ttp.store.sql import migrate

    url = db_url(db)
    try:
        revision = run(migrate.current(url))
    except Exception as exc:
        err_console.print(f"[red]error:[/] reading {_shown(url)} failed: "
                          f"{escape(str(exc))}",
                          highlight=False)
        raise typer.Exit(1) from None
    head = migrate.head()
    if revision == head:
        console.print(f"{revision} (head)", highlight=False)
        return
    console.print(f"{revision or 'no schema'} (this version needs {head}; run "
                  f"decnet-ttp db upgrade --db {_shown(url)})", highlight=False, markup=False)
    raise typer.Exit(1)
