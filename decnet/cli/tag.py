"""`decnet-ttp tag`: the main job."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Annotated, Any, Final

import orjson
import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from decnet.cli.common import (
    EXIT_INPUT,
    BadInput,
    cli_errors,
    console,
    err_console,
    fail,
    labelled,
    rules_dir,
)
from decnet.ttp.constants import SUMMARY_TOP
from decnet.ttp.coverage.navigator import layer_from_counts, write_layer
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.inputs import FORMATS
from decnet.ttp.jobs.reading import GZIP_MAGIC, STDIN, open_input
from decnet.ttp.jobs.summary import Activity, TagSummary
from decnet.ttp.jobs.tagging import TagJob, default_jobs
from decnet.ttp.printable import printable
from decnet.ttp.rules.loader import load_directory

#: Techniques listed per row of the per-attacker tables.
TECHNIQUES_SHOWN: Final = 6

def tag(
    events: Annotated[list[Path], typer.Argument(
        help="Log files to tag ('-' for stdin; gzip is read transparently).",
        allow_dash=True)],
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Write tags here (default: stdout).")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", help=f"Input format: {', '.join(FORMATS)} (auto: per line).")] = "auto",
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", min=1, help="Processes to tag with [default: every core].")] = None,
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="Rules directory [env DECNET_TTP_RULES_DIR; default ./rules/ttp]")] = None,
    strict: Annotated[bool, typer.Option(help="Refuse to run when a rule file is bad.")] = False,
    show: Annotated[int, typer.Option(help="Print the first N tags as a table.")] = 0,
    navigator: Annotated[Path | None, typer.Option(
        "--navigator", help="Write an ATT&CK Navigator layer of the techniques tagged "
                            "(score = tag count).")] = None,
) -> None:
    """Tag honeypot logs with ATT&CK techniques; one JSON tag per line."""
    with cli_errors():
        _tag(events, output, fmt, jobs, rules, strict, show, navigator)


def _check_inputs(events: list[Path], output: Path | None, fmt: str) -> None:
    if fmt not in FORMATS:
        raise BadInput(f"unknown --format {fmt!r} (one of {', '.join(FORMATS)})")
    names = [str(path) for path in events]
    if names.count(STDIN) > 1:
        raise BadInput("stdin ('-') can be read once only")
    for path, name in zip(events, names, strict=True):
        if name == STDIN:
            continue
        if path.is_dir():
            raise BadInput(f"events file {path} is a directory")
        if not path.exists():
            raise BadInput(f"events file {path} does not exist")
    if output is None:
        return
    if output.is_dir():
        raise BadInput(f"output {output} is a directory")
    for path, name in zip(events, names, strict=True):
        if name != STDIN and output.exists() and os.path.samefile(output, path):
            raise BadInput(f"output {output} is the input {path}: it would be overwritten")


def _tag(events: list[Path], output: Path | None, fmt: str, jobs: int | None,
         rules: Path | None, strict: bool, show: int, navigator: Path | None = None) -> None:
    directory = rules_dir(rules)
    loaded = load_directory(directory) if directory.is_dir() else None
    if loaded is None:
        fail(f"rules directory {directory} does not exist", EXIT_INPUT)
    for error in loaded.errors:
        err_console.print(labelled("rule error:", "red", printable(error)), highlight=False)
    if loaded.errors and strict:
        raise typer.Exit(1)
    if not loaded.rules:
        fail(f"no usable rules in {directory}")
    _check_inputs(events, output, fmt)
    engine = RuleEngine(loaded.rules.values())
    names = [str(path) for path in events]
    total = _total_size(events)
    with ExitStack() as stack:
        sink: IO[bytes] = (sys.stdout.buffer if output is None
                           else stack.enter_context(output.open("wb")))
        job = stack.enter_context(TagJob(engine, fmt=fmt, jobs=jobs or default_jobs()))
        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), TimeRemainingColumn(), console=err_console,
                      disable=not err_console.is_terminal, transient=True) as bar:
            title = events[0].name if len(events) == 1 else f"{len(events)} files"
            task = bar.add_task(f"tagging {escape(printable(title))}", total=total)
            summary = job.run(_opened(names), sink, progress=lambda n: bar.advance(task, n))
    _print_summary(summary, len(loaded.rules), output)
    if navigator is not None:
        write_layer(navigator, layer_from_counts(summary.techniques))
    if show and output is not None:
        _print_sample(output, show)


def _opened(names: list[str]) -> Iterator[tuple[str, IO[bytes]]]:
    for name in names:
        with open_input(name) as stream:
            yield name, stream


def _total_size(events: list[Path]) -> int | None:
    """Bytes the progress bar expects: known for plain regular files only (a pipe, stdin
    or a gzip file, read decompressed, has no size to show)."""
    total = 0
    for path in events:
        if str(path) == STDIN or not path.is_file():
            return None
        with path.open("rb") as handle:
            if handle.read(2) == GZIP_MAGIC:
                return None
        total += path.stat().st_size
    return total


def _print_summary(summary: TagSummary, rule_count: int, output: Path | None) -> None:
    err_console.print(Text.assemble(
        (f"{summary.events:,}", "bold"), " events, ", (f"{summary.tags:,}", "bold"),
        f" tags from {rule_count} rules in {summary.seconds:.2f} s "
        f"({summary.events_per_second:,.0f} events/s)",
        f" -> {printable(output)}" if output else ""), highlight=False)
    if summary.bad_lines:
        err_console.print(f"[yellow]{summary.bad_lines} malformed line(s) skipped:[/]")
        for label, line, reason in summary.bad_line_reasons:
            where = f"{printable(label)}: " if label else ""
            err_console.print(Text(f"  {where}line {line}: {printable(reason)}"),
                              highlight=False)
    if summary.unknown:
        err_console.print(Text(f"{summary.skipped:,} record(s) of unknown kinds skipped: "
                               + ", ".join(f"{printable(kind)} ({count:,})" for kind, count
                                           in summary.unknown.most_common(SUMMARY_TOP))),
                          highlight=False)
    if summary.techniques:
        table = Table(title="Top techniques", title_justify="left")
        table.add_column("technique")
        table.add_column("tags", justify="right")
        for technique, count in summary.techniques.most_common(SUMMARY_TOP):
            table.add_row(_cell(technique), f"{count:,}")
        err_console.print(table)
    _print_activity("Top source addresses", "address", summary.addresses.top(SUMMARY_TOP),
                    summary.addresses.dropped, with_address=False)
    _print_activity("Top sessions", "session", summary.sessions.top(SUMMARY_TOP),
                    summary.sessions.dropped, with_address=True)


def _print_activity(title: str, key_name: str, rows: list[tuple[str, Activity]],
                    dropped: int, *, with_address: bool) -> None:
    rows = [(key, row) for key, row in rows if row.tags]
    if not rows:
        return
    caption = (f"{dropped:,} less active keys dropped past the tracking cap: counts are "
               "lower bounds" if dropped else None)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column(key_name, overflow="fold")
    if with_address:
        table.add_column("address", overflow="fold")
    table.add_column("events", justify="right")
    table.add_column("tags", justify="right")
    table.add_column("techniques", overflow="fold")
    for key, row in rows:
        techniques = ", ".join(row.top_techniques(TECHNIQUES_SHOWN))
        cells = [_cell(key)]
        if with_address:
            cells.append(_cell(row.src_ip or ""))
        cells += [Text(f"{row.events:,}"), Text(f"{row.tags:,}"), _cell(techniques)]
        table.add_row(*cells)
    err_console.print(table)


def _cell(value: Any) -> Text:
    """A table cell of event or tag data (attacker-controlled): shown as is, never markup,
    control characters escaped."""
    return Text(printable(value))


def _print_sample(output: Path, limit: int) -> None:
    """The first tag of each of the first `limit` rules that fired: a varied sample."""
    table = Table(title=f"Sample tags (first of {limit} rules)", title_justify="left")
    for column in ("source_id", "rule_id", "tactic", "technique", "confidence", "evidence"):
        table.add_column(column, overflow="fold")
    seen: set[str] = set()
    with output.open("rb") as handle:
        for line in handle:
            try:
                tag = orjson.loads(line)
                rule_id = str(tag["rule_id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if rule_id in seen:
                continue
            seen.add(rule_id)
            technique = tag.get("sub_technique_id") or tag.get("technique_id")
            evidence = tag.get("evidence") or {}
            first = next(iter(evidence.values()), "") if isinstance(evidence, dict) else ""
            confidence = tag.get("confidence")
            table.add_row(_cell(tag.get("source_id")), _cell(rule_id), _cell(tag.get("tactic")),
                          _cell(technique),
                          _cell(f"{confidence:.2f}" if isinstance(confidence, float) else ""),
                          _cell(str(first)[:60]))
            if len(seen) >= limit:
                break
    console.print(table)
