"""`decnet-ttp`: the root command."""

from __future__ import annotations

import contextlib
import importlib
from typing import Annotated

import typer

from decnet.cli import rules, tag
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

# Sub-apps that live in their own modules, each owning one concern.
for _module, _name in (("decnet.cli.state", "state"), ("decnet.cli.db", "db")):
    with contextlib.suppress(ModuleNotFoundError):
        app.add_typer(importlib.import_module(_module).app, name=_name)
with contextlib.suppress(ModuleNotFoundError):
    importlib.import_module("decnet.cli.swarm").register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
