"""`decnet-ttp`: the root command."""

from __future__ import annotations

from typing import Annotated

import typer

from decnet.cli import db, fleet, rules, state, swarm, tag, token
from decnet.cli.common import setup_logging

app = typer.Typer(
    name="decnet-ttp",
    help="TTP rule store of a deception network: tag events, manage rules and their state, "
         "run a swarm.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False) -> None:
    setup_logging(verbose)


app.command("tag")(tag.tag)
app.add_typer(rules.app, name="rules")
app.add_typer(state.app, name="state")
app.add_typer(db.app, name="db")
app.add_typer(token.app, name="token")
app.add_typer(fleet.app, name="fleet")
swarm.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
