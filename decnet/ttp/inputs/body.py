"""A request body of records (one JSON value, an array, or JSON lines) onto events."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from decnet.ttp.engine.events import Event, EventError
from decnet.ttp.engine.jsonio import JSONInputError, parse_json
from decnet.ttp.inputs.base import Skipped
from decnet.ttp.inputs.formats import mapper
from decnet.ttp.inputs.sessions import SessionProtocols


@dataclass(frozen=True, slots=True)
class BodyError:
    """Record `index` (0-based: array item or line) could not be read."""

    index: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "error": self.reason}


@dataclass(slots=True)
class ParsedBody:
    events: list[Event] = field(default_factory=list)
    errors: list[BodyError] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)


def _records(data: bytes) -> list[tuple[int, Any, bytes] | BodyError]:
    """Each record with the bytes its source id hashes: the line as sent, or for an
    item of one JSON value, its canonical JSON."""
    try:
        whole = parse_json(data)
    except JSONInputError:
        whole = None
    else:
        items = whole if isinstance(whole, list) else [whole]
        out: list[tuple[int, Any, bytes] | BodyError] = []
        for index, item in enumerate(items):
            try:
                out.append((index, item, orjson.dumps(item, option=orjson.OPT_SORT_KEYS)))
            except (TypeError, orjson.JSONEncodeError) as exc:
                out.append(BodyError(index, f"unserialisable record: {exc}"))
        return out
    records: list[tuple[int, Any, bytes] | BodyError] = []
    for index, line in enumerate(data.splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            records.append((index, parse_json(line), line))
        except JSONInputError as exc:
            records.append(BodyError(index, str(exc)))
    return records


def parse_body(data: bytes, fmt: str) -> ParsedBody:
    """The events of a body in format `fmt`, the records it could not read, and the
    unknown kinds it skipped. Never raises for what a client sends; `ValueError` for an
    unknown format name."""
    map_record = mapper(fmt)
    parsed = ParsedBody()
    sessions = SessionProtocols()
    for item in _records(data):
        if isinstance(item, BodyError):
            parsed.errors.append(item)
            continue
        index, record, raw = item
        try:
            mapped = map_record(record, raw)
        except EventError as exc:
            parsed.errors.append(BodyError(index, str(exc)))
            continue
        except Exception as exc:  # hostile data must cost its own record, never the body
            parsed.errors.append(BodyError(index, f"unreadable record ({type(exc).__name__})"))
            continue
        if isinstance(mapped, Skipped):
            parsed.unknown[mapped.kind] += 1
            continue
        parsed.events.extend(sessions.observe(event) for event in mapped)
    return parsed
