"""The main job: stream JSONL events through the engine, write JSONL tags.

Memory stays constant whatever the file size: events are read, evaluated and
written in bounded batches. A malformed line is counted and reported with its
line number; it never stops the job.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Final

import orjson

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError

BATCH_LINES: Final = 4096
MAX_REPORTED_BAD_LINES: Final = 20


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


def _batches(source: IO[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for line in source:
        batch.append(line)
        if len(batch) >= BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


def tag_stream(
    engine: RuleEngine,
    source: IO[bytes],
    sink: IO[bytes],
    progress: Callable[[int], None] | None = None,
) -> TagSummary:
    """Evaluate every event line of `source`, writing one JSON tag per line to `sink`."""
    summary = TagSummary()
    started = time.perf_counter()
    line_number = 0
    evaluate = engine.evaluate
    dumps = orjson.dumps
    for batch in _batches(source):
        out: list[bytes] = []
        read = 0
        for raw in batch:
            line_number += 1
            read += len(raw)
            if not raw.strip():
                continue
            try:
                event = Event.from_mapping(orjson.loads(raw))
            except (orjson.JSONDecodeError, EventError) as exc:
                summary.bad_lines += 1
                if len(summary.bad_line_reasons) < MAX_REPORTED_BAD_LINES:
                    summary.bad_line_reasons.append((line_number, str(exc)))
                continue
            summary.events += 1
            for tag in evaluate(event):
                out.append(dumps(tag.as_dict()))
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
