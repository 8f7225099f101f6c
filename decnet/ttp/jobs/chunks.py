"""One block of lines through the input adapter and the single-event rules.

This is the part of the tag job that runs in parallel: it keeps no state between
blocks, so any process may take any block. Cross-event rules, Cowrie session
bookkeeping and writing stay in the parent, in input order (`tagging`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import orjson

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError, Tag
from decnet.ttp.inputs import Mapper, SessionProtocols, Skipped
from decnet.ttp.jobs.reading import TOO_LONG, Block

#: The line number of an event, the event, its single-event tags and their JSON lines;
#: `None` lines: the parent completes the event (a Cowrie login's service) and matches
#: it itself.
Evaluated = tuple[int, Event, list[Tag], bytes | None]

_NO_TAGS: Final[list[Tag]] = []


@dataclass(slots=True)
class BlockResult:
    label: str
    evaluated: list[Evaluated] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)


def serialize(tags: list[Tag]) -> bytes:
    """The tags as JSON lines; raises `TypeError`/`orjson.JSONEncodeError` on odd data."""
    dumps = orjson.dumps
    return b"".join([dumps(tag.as_dict()) + b"\n" for tag in tags])


def process_block(engine: RuleEngine, map_record: Mapper, block: Block, max_line: int,
                  too_long: str) -> BlockResult:
    """Decode, map and match every line of `block`; a bad line is reported, never raised."""
    result = BlockResult(block.label)
    evaluated = result.evaluated
    loads = orjson.loads
    match = engine.match
    needs = SessionProtocols.needs
    number = block.first_line - 1
    lines = block.data.split(b"\n")
    lines.pop()  # a block ends with a newline
    for raw in lines:
        number += 1
        if len(raw) > max_line or raw == TOO_LONG:
            result.bad.append((number, too_long))
            continue
        if not raw or raw.isspace():
            continue
        raw = raw.rstrip()
        try:
            mapped = map_record(loads(raw), raw)
        except (orjson.JSONDecodeError, EventError) as exc:
            result.bad.append((number, str(exc)))
            continue
        except Exception as exc:  # hostile data must cost its own line, never the job
            result.bad.append((number, f"unreadable record ({type(exc).__name__})"))
            continue
        if isinstance(mapped, Skipped):
            result.unknown[mapped.kind] += 1
            continue
        for event in mapped:
            if needs(event):
                evaluated.append((number, event, _NO_TAGS, None))
                continue
            try:
                tags = match(event)
                lines_out = serialize(tags) if tags else b""
            except Exception as exc:
                result.bad.append((number, f"event not evaluated ({type(exc).__name__}: "
                                           f"{str(exc)[:200]})"))
                evaluated.append((number, event, _NO_TAGS, b""))
                continue
            evaluated.append((number, event, tags, lines_out))
    return result
