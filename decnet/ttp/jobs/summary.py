"""What a tag job reports: counts, top techniques, and who did what (bounded).

The per-attacker view counts events, tags and techniques per source address and per
session. It tracks at most `SUMMARY_TRACKED_KEYS` of each: past the cap the least
active half is dropped, so a key first seen after a drop may be under-counted (the
summary says how many keys were dropped). Each key keeps its
`SUMMARY_TECHNIQUES_PER_KEY` first techniques.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from decnet.ttp.constants import (
    SUMMARY_TECHNIQUES_PER_KEY,
    SUMMARY_TRACKED_KEYS,
    SUMMARY_UNKNOWN_KINDS,
)
from decnet.ttp.engine.events import Event, Tag

MAX_REPORTED_BAD_LINES: Final = 20
OTHER_KINDS: Final = "(other)"


@dataclass(slots=True)
class Activity:
    """One source address's or session's events, tags and techniques."""

    events: int = 0
    tags: int = 0
    techniques: dict[str, int] | None = None
    src_ip: str | None = None

    def rank(self) -> int:
        """Tags first, then events, as one integer (cheap to sort)."""
        return (self.tags << 40) + self.events

    def top_techniques(self, count: int) -> list[str]:
        found = self.techniques or {}
        return heapq.nlargest(count, found, key=found.__getitem__)


def _rank(item: tuple[str, Activity]) -> int:
    return item[1].rank()


class ActivityTable:
    """Activity per key, at most `capacity` keys (see the module docstring)."""

    def __init__(self, capacity: int = SUMMARY_TRACKED_KEYS) -> None:
        self.capacity = capacity
        self.rows: dict[str, Activity] = {}
        self.dropped = 0

    def row(self, key: str) -> Activity:
        row = self.rows.get(key)
        if row is None:
            if len(self.rows) >= self.capacity:
                self._prune()
            row = self.rows[key] = Activity()
        return row

    def _prune(self) -> None:
        """Down to half the capacity: keys without tags go first, then the least active."""
        half = self.capacity // 2
        before = len(self.rows)
        rows = {key: row for key, row in self.rows.items() if row.tags}
        if len(rows) > half:
            ranks = sorted([row.rank() for row in rows.values()])
            cut = ranks[len(ranks) - half]
            kept = ((key, row) for key, row in rows.items() if row.rank() >= cut)
            rows = dict(itertools.islice(kept, half))
        self.dropped += before - len(rows)
        self.rows = rows

    def merge(self, rows: dict[str, Row]) -> None:
        table = self.rows
        for key, (events, tags, techniques, src_ip) in rows.items():
            row = table.get(key)
            if row is None:
                row = self.row(key)
                table = self.rows  # a prune replaces the dict
            row.events += events
            if src_ip is not None:
                row.src_ip = src_ip
            if tags:
                row.tags += tags
                if row.techniques is None:
                    row.techniques = techniques  # a block's own dict, already capped
                else:
                    _add_techniques(row.techniques, techniques.items())

    def top(self, count: int) -> list[tuple[str, Activity]]:
        return heapq.nlargest(count, self.rows.items(), key=_rank)


def _add_techniques(seen: dict[str, int], names: Iterable[tuple[str, int]]) -> None:
    for name, count in names:
        if name in seen:
            seen[name] += count
        elif len(seen) < SUMMARY_TECHNIQUES_PER_KEY:
            seen[name] = count


#: A block's activity of one key: [events, tags, techniques (or None), source address].
#: Plain lists and dicts: they cross from a worker process to the parent cheaply.
Row = list[Any]


@dataclass(slots=True)
class Counts:
    """What some events added up to: events, tags, techniques, rules, and activity per
    source address and session (unbounded: a block's worth, merged into a summary)."""

    events: int = 0
    tags: int = 0
    techniques: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    addresses: dict[str, Row] = field(default_factory=dict)
    sessions: dict[str, Row] = field(default_factory=dict)

    def add(self, event: Event, tags: list[Tag]) -> None:
        """One event and its tags."""
        self.events += 1
        self.add_tags(event, tags)

    def add_tags(self, event: Event, tags: list[Tag]) -> None:
        """Tags of an event already counted (its activity when it has none)."""
        src_ip = event.src_ip
        session = event.session_id
        if tags:
            names = [tag.sub_technique_id or tag.technique_id for tag in tags]
            self.tags += len(tags)
            self.techniques.update(names)
            self.rules.update(tag.rule_id for tag in tags)
            if src_ip is not None:
                _count_tagged(self.addresses, src_ip, names, None)
            if session is not None:
                _count_tagged(self.sessions, session, names, src_ip)
            return
        if src_ip is not None:
            row = self.addresses.get(src_ip)
            if row is None:
                self.addresses[src_ip] = [1, 0, None, None]
            else:
                row[0] += 1
        if session is not None:
            row = self.sessions.get(session)
            if row is None:
                self.sessions[session] = [1, 0, None, src_ip]
            else:
                row[0] += 1


def _count_tagged(rows: dict[str, Row], key: str, names: list[str],
                  src_ip: str | None) -> None:
    row = rows.get(key)
    if row is None:
        row = rows[key] = [0, 0, None, src_ip]
    row[0] += 1
    row[1] += len(names)
    seen: dict[str, int] | None = row[2]
    if seen is None:
        seen = row[2] = {}
    for name in names:
        if name in seen:
            seen[name] += 1
        elif len(seen) < SUMMARY_TECHNIQUES_PER_KEY:
            seen[name] = 1


@dataclass(slots=True)
class TagSummary:
    events: int = 0
    tags: int = 0
    bad_lines: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    skipped: int = 0
    techniques: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    bad_line_reasons: list[tuple[str, int, str]] = field(default_factory=list)
    unknown: Counter[str] = field(default_factory=Counter)
    addresses: ActivityTable = field(default_factory=ActivityTable)
    sessions: ActivityTable = field(default_factory=ActivityTable)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def bad_line(self, label: str, line: int, reason: str) -> None:
        """Line `line` of input `label` was skipped for `reason`."""
        self.bad_lines += 1
        if len(self.bad_line_reasons) < MAX_REPORTED_BAD_LINES:
            self.bad_line_reasons.append((label, line, reason))

    def unknown_kind(self, kind: str, count: int = 1) -> None:
        self.skipped += count
        if kind in self.unknown or len(self.unknown) < SUMMARY_UNKNOWN_KINDS:
            self.unknown[kind] += count
        else:
            self.unknown[OTHER_KINDS] += count

    def merge(self, counts: Counts) -> None:
        self.events += counts.events
        self.tags += counts.tags
        self.techniques.update(counts.techniques)
        self.rules.update(counts.rules)
        self.addresses.merge(counts.addresses)
        self.sessions.merge(counts.sessions)
