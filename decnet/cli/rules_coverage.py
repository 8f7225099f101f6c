"""`decnet-ttp rules coverage`: which ATT&CK techniques the rules cover."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from decnet.cli.common import (
    EXIT_INPUT,
    cli_errors,
    console,
    err_console,
    fail,
    labelled,
    rules_dir,
)
from decnet.ttp.constants import ATTACK_RELEASE, ENTERPRISE_TACTICS
from decnet.ttp.coverage import coverage_by_tactic, covered, layer_from_rules, write_layer
from decnet.ttp.rules.loader import load_directory


def coverage(
    directory: Annotated[Path | None, typer.Argument(
        help="Rules directory [env DECNET_TTP_RULES_DIR; default ./rules/ttp]")] = None,
    navigator: Annotated[Path | None, typer.Option(
        "--navigator", help="Write an ATT&CK Navigator layer (JSON) to this file.")] = None,
) -> None:
    """Techniques the rules emit, by tactic; or an ATT&CK Navigator layer of them."""
    target = rules_dir(directory)
    if not target.is_dir():
        fail(f"{target} is not a directory", EXIT_INPUT)
    with cli_errors():
        loaded = load_directory(target)
        for error in loaded.errors:
            err_console.print(labelled("rule error:", "red", str(error)), highlight=False)
        rules = list(loaded.rules.values())
        if navigator is not None:
            layer = layer_from_rules(rules)
            write_layer(navigator, layer)
            console.print(Text(f"{len(layer['techniques'])} layer entries (technique, tactic) "
                               f"from {len(rules)} rule(s) -> {navigator} ({ATTACK_RELEASE})"),
                          highlight=False)
            return
    table = Table(title=f"ATT&CK coverage ({ATTACK_RELEASE})", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("tactic", "left"), ("name", "left"), ("techniques", "right"), ("rules", "right"),
        ("covered", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify, overflow="fold")
    for row in coverage_by_tactic(rules):
        table.add_row(row.tactic, row.name, str(len(row.techniques)), str(len(row.rules)),
                      Text(", ".join(row.techniques)),
                      style=None if row.techniques else "dim")
    console.print(table)
    entries = covered(rules)
    tactics = {c.tactic for c in entries}
    console.print(f"{len({c.technique for c in entries})} technique(s) and sub-technique(s) "
                  f"in {len(tactics)} of {len(ENTERPRISE_TACTICS)} tactics, "
                  f"from {len(rules)} rule(s)", highlight=False, markup=False)
