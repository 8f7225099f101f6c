"""What a tag job reports: counts, top techniques, and who did what (bounded).

The per-attacker view counts events, tags and techniques per source address and per
session. It tracks at most `SUMMARY_TRACKED_KEYS` of each: past the cap the least
active half is dropped, so a key first seen after a drop may be under-counted (the
summary says how many keys were dropped). Each key keeps its
`SUMMARY_TECHNIQUES_PER_KEY` first techniques.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

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
    techniques: Counter[str] = field(default_factory=Counter)
    src_ip: str | None = None

    def rank(self) -> tuple[int, int]:
        return self.tags, self.events


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
        keep = sorted(self.rows.items(), key=lambda item: item[1].rank(), reverse=True)
        half = self.capacity // 2
        self.dropped += len(keep) - half
        self.rows = dict(keep[:half])

    def merge(self, rows: dict[str, Activity]) -> None:
        for key, add in rows.items():
            row = self.row(key)
            row.events += add.events
            row.tags += add.tags
            if add.src_ip is not None:
                row.src_ip = add.src_ip
            if add.techniques:
                _add_techniques(row.techniques, add.techniques.items())

    def top(self, count: int) -> list[tuple[str, Activity]]:
        return sorted(self.rows.items(), key=lambda item: item[1].rank(), reverse=True)[:count]


def _technique(tag: Tag) -> str:
    return tag.sub_technique_id or tag.technique_id


def _add_techniques(seen: Counter[str], names: Iterable[tuple[str, int]]) -> None:
    for name, count in names:
        if name in seen or len(seen) < SUMMARY_TECHNIQUES_PER_KEY:
            seen[name] += count


@dataclass(slots=True)
class Counts:
    """What some events added up to: events, tags, techniques, rules, and activity per
    source address and session (unbounded: a block's worth, merged into a summary)."""

    events: int = 0
    tags: int = 0
    techniques: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    addresses: dict[str, Activity] = field(default_factory=dict)
    sessions: dict[str, Activity] = field(default_factory=dict)

    def add(self, event: Event, tags: list[Tag]) -> None:
        self.events += 1
        src_ip = event.src_ip
        session = event.session_id
        names = [_technique(tag) for tag in tags] if tags else None
        if names:
            self.tags += len(tags)
            self.techniques.update(names)
            self.rules.update(tag.rule_id for tag in tags)
        if src_ip is not None:
            _count(self.addresses, src_ip, names, None)
        if session is not None:
            _count(self.sessions, session, names, src_ip)


def _count(rows: dict[str, Activity], key: str, names: list[str] | None,
           src_ip: str | None) -> None:
    row = rows.get(key)
    if row is None:
        row = rows[key] = Activity()
    row.events += 1
    if src_ip is not None:
        row.src_ip = src_ip
    if names:
        row.tags += len(names)
        _add_techniques(row.techniques, ((name, 1) for name in names))


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
