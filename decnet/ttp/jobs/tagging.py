"""The main job: stream JSONL events through the engine, write JSONL tags.

Memory stays constant whatever the file size: events are read, evaluated and
written in bounded batches, and no line is read past `MAX_EVENT_LINE_BYTES` (a
longer one is skipped in chunks, never held whole). A malformed or over-long line
is counted and reported with its line number; it never stops the job.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Final

from decnet.ttp.constants import MAX_EVENT_LINE_BYTES
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError
from decnet.ttp.engine.jsonio import dump_tag, parse_json

BATCH_LINES: Final = 4096
MAX_REPORTED_BAD_LINES: Final = 20
#: Bytes read at a time while skipping the rest of an over-long line.
SKIP_CHUNK_BYTES: Final = 64 * 1024


@dataclass(slots=True)
class TagSummary:
    events: int = 0
    tags: int = 0
    bad_lines: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    techniques: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    bad_line_reasons: list[tuple[int, str]] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def _batches(source: IO[bytes], max_line: int) -> Iterator[tuple[list[bytes | None], int]]:
    """Batches of lines and the bytes they took; an over-long line is None (skipped)."""
    readline = source.readline
    limit = max_line + 1  # a full line: up to `max_line` bytes, then its newline
    batch: list[bytes | None] = []
    read = 0
    while line := readline(limit):
        read += len(line)
        if len(line) == limit and line[-1] != 0x0A:  # no newline within the limit
            batch.append(None)
            while (rest := readline(SKIP_CHUNK_BYTES)) and rest[-1] != 0x0A:
                read += len(rest)
            read += len(rest)
        else:
            batch.append(line)
        if len(batch) >= BATCH_LINES:
            yield batch, read
            batch = []
            read = 0
    if batch:
        yield batch, read


def _size(limit: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


def tag_stream(
    engine: RuleEngine,
    source: IO[bytes],
    sink: IO[bytes],
    progress: Callable[[int], None] | None = None,
    *,
    max_line_bytes: int = MAX_EVENT_LINE_BYTES,
) -> TagSummary:
    """Evaluate every event line of `source`, writing one JSON tag per line to `sink`.

    A line longer than `max_line_bytes` (newline excluded) is reported and skipped.
    """
    summary = TagSummary()
    too_long = f"longer than {_size(max_line_bytes)}, skipped"
    started = time.perf_counter()
    line_number = 0
    evaluate = engine.evaluate
    for batch, read in _batches(source, max_line_bytes):
        out: list[bytes] = []
        for raw in batch:
            line_number += 1
            if raw is None:
                _bad_line(summary, line_number, too_long)
                continue
            if not raw.strip():
                continue
            try:
                event = Event.from_mapping(parse_json(raw))
            except EventError as exc:
                _bad_line(summary, line_number, str(exc))
                continue
            summary.events += 1
            for tag in evaluate(event):
                out.append(dump_tag(tag))
                summary.techniques[tag.sub_technique_id or tag.technique_id] += 1
                summary.rules[tag.rule_id] += 1
        if out:
            summary.tags += len(out)
            sink.write(b"\n".join(out))
            sink.write(b"\n")
        summary.bytes_read += read
        if progress is not None:
            progress(read)
    summary.seconds = time.perf_counter() - started
    return summary


def _bad_line(summary: TagSummary, line_number: int, reason: str) -> None:
    summary.bad_lines += 1
    if len(summary.bad_line_reasons) < MAX_REPORTED_BAD_LINES:
        summary.bad_line_reasons.append((line_number, reason))
