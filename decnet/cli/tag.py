"""`decnet-ttp tag`: the main job."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
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
from decnet.ttp.coverage.navigator import layer_from_counts, write_layer
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.jobs.tagging import TagSummary, tag_stream
from decnet.ttp.rules.loader import load_directory


def tag(
    events: Annotated[Path, typer.Argument(help="JSONL file of events ('-' for stdin).",
                                           allow_dash=True)],
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Write tags here (default: stdout).")] = None,
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="Rules directory [env DECNET_TTP_RULES_DIR; default ./rules/ttp]")] = None,
    strict: Annotated[bool, typer.Option(help="Refuse to run when a rule file is bad.")] = False,
    show: Annotated[int, typer.Option(help="Print the first N tags as a table.")] = 0,
    navigator: Annotated[Path | None, typer.Option(
        "--navigator", help="Write an ATT&CK Navigator layer of the techniques tagged "
                            "(score = tag count).")] = None,
) -> None:
    """Tag honeypot EVENTS with ATT&CK techniques; one JSON tag per line."""
    with cli_errors():
        _tag(events, output, rules, strict, show, navigator)


def _tag(events: Path, output: Path | None, rules: Path | None, strict: bool,
         show: int, navigator: Path | None = None) -> None:
    directory = rules_dir(rules)
    loaded = load_directory(directory) if directory.is_dir() else None
    if loaded is None:
        fail(f"rules directory {directory} does not exist", EXIT_INPUT)
    for error in loaded.errors:
        err_console.print(labelled("rule error:", "red", str(error)), highlight=False)
    if loaded.errors and strict:
        raise typer.Exit(1)
    if not loaded.rules:
        fail(f"no usable rules in {directory}")
    engine = RuleEngine(loaded.rules.values())
    str_events = str(events)
    if str_events != "-" and not events.is_file():
        fail(f"events file {events} does not exist", EXIT_INPUT)
    with ExitStack() as stack:
        source: IO[bytes] = (sys.stdin.buffer if str_events == "-"
                             else stack.enter_context(events.open("rb")))
        sink: IO[bytes] = (sys.stdout.buffer if output is None
                           else stack.enter_context(output.open("wb")))
        total = events.stat().st_size if str_events != "-" else None
        interactive = err_console.is_terminal
        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), TimeRemainingColumn(), console=err_console,
                      disable=not interactive, transient=True) as bar:
            task = bar.add_task(f"tagging {escape(events.name)}", total=total)
            summary = tag_stream(engine, source, sink,
                                 progress=lambda n: bar.advance(task, n))
    _print_summary(summary, len(loaded.rules), output)
    if navigator is not None:
        write_layer(navigator, layer_from_counts(summary.techniques))
    if show and output is not None:
        _print_sample(output, show)


def _print_summary(summary: TagSummary, rule_count: int, output: Path | None) -> None:
    err_console.print(Text.assemble(
        (f"{summary.events:,}", "bold"), " events, ", (f"{summary.tags:,}", "bold"),
        f" tags from {rule_count} rules in {summary.seconds:.2f} s "
        f"({summary.events_per_second:,.0f} events/s)",
        f" -> {output}" if output else ""), highlight=False)
    if summary.bad_lines:
        err_console.print(f"[yellow]{summary.bad_lines} malformed line(s) skipped:[/]")
        for line, reason in summary.bad_line_reasons:
            err_console.print(Text(f"  line {line}: {reason}"), highlight=False)
    if summary.techniques:
        table = Table(title="Top techniques", title_justify="left")
        table.add_column("technique")
        table.add_column("tags", justify="right")
        for technique, count in summary.techniques.most_common(10):
            table.add_row(Text(technique), f"{count:,}")
        err_console.print(table)


def _cell(value: Any) -> Text:
    """A table cell of event or tag data (attacker-controlled): shown as is, never markup."""
    return Text(value if isinstance(value, str) else str(value))


def _print_sample(output: Path, limit: int) -> None:
    """The first tag of each of the first `limit` rules that fired: a varied sample."""
    table = Table(title=f"Sample tags (first of {limit} rules)", title_justify="left")
    for column in ("source_id", "rule_id", "tactic", "technique", "confidence", "evidence"):
        table.add_column(column, overflow="fold")
    seen: set[str] = set()
    with output.open("rb") as handle:
        for line in handle:
            tag = orjson.loads(line)
            if tag["rule_id"] in seen:
                continue
            seen.add(tag["rule_id"])
            technique = tag["sub_technique_id"] or tag["technique_id"]
            evidence = next(iter(tag["evidence"].values()), "") if tag["evidence"] else ""
            table.add_row(_cell(tag["source_id"]), _cell(tag["rule_id"]), _cell(tag["tactic"]),
                          _cell(technique), _cell(f"{tag['confidence']:.2f}"),
                          _cell(str(evidence)[:60]))
            if len(seen) >= limit:
                break
    console.print(table)
