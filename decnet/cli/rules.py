"""`decnet-ttp rules validate|list`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from decnet.cli import rules_coverage, rules_test
from decnet.cli.common import (
    EXIT_INPUT,
    cli_errors,
    console,
    db_url,
    err_console,
    fail,
    labelled,
    rules_dir,
    run,
    safe_text,
)
from decnet.ttp.constants import ENV_DB_URL
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.loader import load_directory
from decnet.ttp.store.factory import configured_store_type, database_store

app = typer.Typer(help="Validate and list rules.", no_args_is_help=True)


@app.command()
def validate(
    directory: Annotated[Path | None, typer.Argument(
        help="Rules directory [env DECNET_TTP_RULES_DIR; default ./rules/ttp]")] = None,
) -> None:
    """Check every rule file; print every error of every file; exit 1 on any."""
    target = rules_dir(directory)
    if not target.is_dir():
        fail(f"{target} is not a directory", EXIT_INPUT)
    with cli_errors(), _compiler_log_muted():
        result = load_directory(target)
    for error in result.errors:
        console.print(labelled("error", "red", str(error)), highlight=False)
    for source, warning in result.warnings:
        console.print(labelled("warning", "yellow", f"{source}: {warning}"), highlight=False)
    files = {e.file for e in result.errors}
    console.print(
        f"{len(result.rules)} rule(s) valid, {len(result.errors)} error(s) in "
        f"{len(files)} file(s), {len(result.warnings)} warning(s)", highlight=False,
    )
    if result.errors:
        raise typer.Exit(1)


@contextmanager
def _compiler_log_muted() -> Iterator[None]:
    """Mute the compiler's warning log lines: `validate` prints every warning itself."""
    logger = logging.getLogger("decnet.ttp.rules.compiler")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


@app.command("list")
def list_rules(
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="Rules directory (filesystem store)")] = None,
    db: Annotated[str | None, typer.Option(
        "--db", help=f"Database URL (database store) [env {ENV_DB_URL}]")] = None,
) -> None:
    """List rules with their operator state."""
    with cli_errors():
        use_db = db is not None or (rules is None and configured_store_type() == "database")
        compiled = (run(_load_from_db(db_url(db))) if use_db
                    else _load_from_dir(rules_dir(rules)))
    table = Table()
    for column in ("rule", "ver", "name", "applies to", "techniques", "state", "expires"):
        table.add_column(column, overflow="fold")
    for rule in compiled:
        techniques = ", ".join(e.sub_technique_id or e.technique_id for e in rule.emits)
        state = rule.state.state.value
        if rule.state.confidence_max is not None:
            state += f" ≤{rule.state.confidence_max:g}"
        expires = rule.state.expires_at.isoformat(timespec="seconds") \
            if rule.state.expires_at else ""
        kinds = "lifter:" + rule.lifter if rule.lifter else ", ".join(sorted(rule.applies_to))
        if rule.correlation is not None:
            kinds += (f" ({rule.correlation.type} by "
                      f"{', '.join(rule.correlation.group_by)})")
        # every cell is data (a rule file's text): shown as it is, never read as markup
        table.add_row(*(Text(safe_text(cell)) for cell in (
            rule.rule_id, str(rule.rule_version), rule.name, kinds, techniques, state,
            expires)))
    console.print(table)
    console.print(f"{len(compiled)} rule(s)", highlight=False, markup=False)


def _load_from_dir(directory: Path) -> list[CompiledRule]:
    if not directory.is_dir():
        fail(f"{directory} is not a directory", EXIT_INPUT)
    result = load_directory(directory)
    for error in result.errors:
        err_console.print(labelled("error", "red", str(error)), highlight=False)
    return sorted(result.rules.values(), key=lambda r: r.rule_id)


async def _load_from_db(url: str) -> list[CompiledRule]:
    store = database_store(url)
    try:
        return await store.load_compiled()
    finally:
        await store.stop()


app.command("test")(rules_test.test)
app.command("coverage")(rules_coverage.coverage)
