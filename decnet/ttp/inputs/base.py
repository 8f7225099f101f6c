"""What every input adapter shares: skips, deterministic source ids, field readers."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from decnet.ttp.engine.events import Event, EventError


@dataclass(frozen=True, slots=True)
class Skipped:
    """A well-formed record that carries no event: `kind` is what it was (an event id, a
    logtype), counted in the job summary as unknown."""

    kind: str


#: A decoded record maps onto zero or more events, or is skipped as unknown.
Mapped = list[Event] | Skipped


def source_id(prefix: str, raw: bytes, index: int = 0) -> str:
    """A deterministic id for the `index`-th event of one log line: a hash of the line.

    The same line always yields the same id (and so the same tag uuids on a re-run).
    """
    digest = _blake2b(raw, digest_size=10).hexdigest()
    return f"{prefix}:{digest}" if index == 0 else f"{prefix}:{digest}/{index}"


_blake2b = hashlib.blake2b
_fromisoformat = datetime.fromisoformat


def text(record: Mapping[str, Any], key: str) -> str | None:
    """A string field of a log record (numbers as text); None when absent."""
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise EventError(f"{key} must be a string")


def number(record: Mapping[str, Any], key: str) -> int | None:
    """An integer field (a port), also when written as text; None when absent or not one."""
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 10:
        return int(value)
    return None


def seconds(value: Any) -> float | None:
    """A duration in seconds (a number or numeric text); None when absent or malformed."""
    if isinstance(value, str) and len(value) <= 32:
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            return None
        return result if math.isfinite(result) else None
    return None


def timestamp(value: Any, *, naive_is_utc: bool = True) -> float | None:
    """Event time as Unix seconds from ISO 8601 text (`Z`, `+0000`, or no offset: UTC)
    or from a number; None when absent. Malformed text raises `EventError`."""
    if value is None:
        return None
    if type(value) is str and len(value) <= 64:
        try:
            moment = _fromisoformat(value)
        except ValueError:
            raise EventError(f"unreadable timestamp {value[:40]!r}") from None
        if moment.tzinfo is None and naive_is_utc:
            moment = moment.replace(tzinfo=UTC)
        result = moment.timestamp()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:
            raise EventError("timestamp is out of range") from None
    else:
        raise EventError("timestamp must be ISO 8601 text or Unix seconds")
    if not math.isfinite(result) or not 0 <= result < 1e11:
        raise EventError("timestamp is out of range")
    return result
