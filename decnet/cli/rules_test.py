"""`decnet-ttp rules test`: run the tests written in the rule files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from decnet.cli.common import EXIT_INPUT, cli_errors, console, fail, labelled, rules_dir
from decnet.cli.terminal import escape_text, json_line
from decnet.ttp.constants import MAX_SHOWN_EVENT_CHARS
from decnet.ttp.jobs.rule_tests import CaseResult, run_rule_tests
from decnet.ttp.rules.loader import load_directory


def test(
    directory: Annotated[Path | None, typer.Argument(
        help="Rules directory [env DECNET_TTP_RULES_DIR; default ./rules/ttp]")] = None,
) -> None:
    """Run every rule's own tests (each rule alone); print failures; exit 1 on any."""
    target = rules_dir(directory)
    if not target.is_dir():
        fail(f"{target} is not a directory", EXIT_INPUT)
    with cli_errors():
        loaded = load_directory(target)
        report = run_rule_tests(loaded.rules.values())
    for error in loaded.errors:
        console.print(labelled("error", "red", escape_text(str(error), 1_000)),
                      highlight=False)
    for failure in report.failures:
        _print_failure(failure)
    failed = len(report.failures)
    console.print(
        f"{report.rules_tested} rule(s) tested, {len(report.results)} case(s): "
        f"{len(report.results) - failed} passed, {failed} failed; "
        f"{len(report.untested)} rule(s) without tests"
        + (f"; {len(loaded.errors)} rule error(s)" if loaded.errors else ""),
        highlight=False, markup=False,
    )
    if failed or loaded.errors:
        raise typer.Exit(1)


def _print_failure(result: CaseResult) -> None:
    """A failing case: where it is, why, its events and what fired (all text escaped)."""
    console.print(Text.assemble(
        ("FAIL", "bold red"), " ", escape_text(result.rule_id, 64), " ",
        f"{result.kind}[{result.index}] ", escape_text(result.where, 500), ": ",
        escape_text(result.reason, 500)), highlight=False)
    for event in result.events:
        console.print(Text("  event: " + json_line(event, MAX_SHOWN_EVENT_CHARS)),
                      highlight=False)
    fired = sorted({f"{t.sub_technique_id or t.technique_id} ({t.tactic})"
                    for t in result.tags})
    console.print(Text("  fired: " + (", ".join(fired) or "nothing")), highlight=False)
    others = [r for r in result.pack_matches if r != result.rule_id]
    if others:
        console.print(Text("  other rules that match: " + ", ".join(others)), highlight=False)
