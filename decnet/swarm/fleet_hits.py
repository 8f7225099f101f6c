"""The fleet's tags, summed from the workers' reports (their `tags` member).

Each report counts what its worker tagged over the last hour and day, as of the report;
the master keeps no history: a worker's counts leave the sum with its report (its TTL,
`FLEET_REPORT_TTL`) or when it restarts. Reports are read defensively — anyone who may
write the fleet bucket may write them — and within the report bounds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from decnet.ttp.constants import (
    CONSOLE_SAMPLE_TAGS,
    FLEET_REPORT_MAX_RULES,
    FLEET_REPORT_MAX_TECHNIQUES,
    HITS_MINUTE_BUCKETS,
    RULE_ID_RE,
    SUB_TECHNIQUE_ID_RE,
    TACTIC_ID_RE,
    TECHNIQUE_ID_RE,
)

#: The periods the console offers, in seconds.
PERIODS: Mapping[str, int] = {"hour": 3600, "day": 86_400}
#: Samples read from one report at most (the worker's report cap makes fewer).
_MAX_SAMPLES_PER_REPORT = 256


class Hits(NamedTuple):
    """Tags in the last hour and in the last day."""

    hour: int = 0
    day: int = 0

    def over(self, period: str) -> int:
        return self.day if period == "day" else self.hour


@dataclass(frozen=True, slots=True)
class Sample:
    """One tag a worker kept as a sample (attacker text: escape where shown)."""

    at: float
    worker_id: str
    tag: dict[str, Any]


@dataclass(slots=True)
class FleetHits:
    """What the fleet tagged: per minute, per rule, per (tactic, technique), and samples."""

    #: tags in each of the last `HITS_MINUTE_BUCKETS` minutes, oldest first, the last
    #: being the current (partial) minute
    per_minute: list[int] = field(default_factory=lambda: [0] * HITS_MINUTE_BUCKETS)
    rules: dict[str, Hits] = field(default_factory=dict)
    techniques: dict[tuple[str, str], Hits] = field(default_factory=dict)
    #: hits of rules the reports did not itemize (each report names its most hit ones)
    omitted: Hits = field(default_factory=Hits)
    #: reports that carried tag counts
    workers: int = 0
    #: the epoch minute of `per_minute[0]`
    first_minute: int = 0
    #: (worker id, its report's `samples`), read only by `samples_of`
    sample_lists: list[tuple[str, list[Any]]] = field(default_factory=list)

    def rule(self, rule_id: str) -> Hits:
        return self.rules.get(rule_id, Hits())

    @property
    def last_minute(self) -> int:
        """Tags in the last complete minute."""
        return self.per_minute[-2]

    @property
    def last_hour(self) -> int:
        return sum(self.per_minute)

    def observed(self, period: str) -> dict[tuple[str, str], int]:
        """(tactic, technique) -> tags over `period`, the ones with tags only."""
        return {key: hits.over(period) for key, hits in self.techniques.items()
                if hits.over(period)}

    def samples_of(self, tactic: str, technique: str, period: str,
                   now: float) -> list[Sample]:
        """The newest `CONSOLE_SAMPLE_TAGS` samples of `technique` under `tactic` seen
        over `period`, across the fleet."""
        since = now - PERIODS.get(period, PERIODS["hour"])
        found = []
        for worker_id, items in self.sample_lists:
            for item in items[:_MAX_SAMPLES_PER_REPORT]:
                sample = _sample(item, worker_id)
                if sample is not None and sample.at >= since and \
                        sample.tag.get("tactic") == tactic and \
                        _technique_of(sample.tag) == technique:
                    found.append(sample)
        found.sort(key=lambda s: -s.at)
        return found[:CONSOLE_SAMPLE_TAGS]


def sum_hits(reports: Iterable[Mapping[str, Any]], now: float) -> FleetHits:
    """The sum of every report's `tags` (reports without one, or malformed parts of one,
    add nothing)."""
    first = int(now // 60) - HITS_MINUTE_BUCKETS + 1
    fleet = FleetHits(first_minute=first)
    rules: dict[str, list[int]] = {}
    techniques: dict[str, list[int]] = {}
    valid_rules: dict[str, bool] = {}
    valid_techniques: dict[str, tuple[str, str] | None] = {}
    omitted_hour = omitted_day = 0
    for report in reports:
        tags = report.get("tags")
        if not isinstance(tags, Mapping):
            continue
        fleet.workers += 1
        for pair in _items(tags.get("per_minute"), HITS_MINUTE_BUCKETS):
            minute, count = _pair(pair)
            if 0 <= minute - first < HITS_MINUTE_BUCKETS:
                fleet.per_minute[minute - first] += count
        for key, value in _entries(tags.get("rules"), FLEET_REPORT_MAX_RULES):
            ok = valid_rules.get(key)
            if ok is None:
                ok = valid_rules[key] = isinstance(key, str) and \
                    RULE_ID_RE.fullmatch(key) is not None
            if ok:
                _add(rules, key, value)
        for key, value in _entries(tags.get("techniques"), FLEET_REPORT_MAX_TECHNIQUES):
            if key not in valid_techniques:
                valid_techniques[key] = _technique_key(key) if isinstance(key, str) else None
            if valid_techniques[key] is not None:
                _add(techniques, key, value)
        omitted = tags.get("omitted")
        if isinstance(omitted, Mapping):
            rules_omitted = omitted.get("rules")
            if isinstance(rules_omitted, list) and len(rules_omitted) == 3:
                hour, day = _pair(rules_omitted[1:])
                omitted_hour += hour
                omitted_day += day
        samples = tags.get("samples")
        if isinstance(samples, list) and samples:
            fleet.sample_lists.append((str(report.get("worker_id"))[:200], samples))
    fleet.rules = {key: Hits(hour, day) for key, (hour, day) in rules.items()}
    fleet.techniques = {valid: Hits(hour, day) for key, (hour, day) in techniques.items()
                        if (valid := valid_techniques[key]) is not None}
    fleet.omitted = Hits(omitted_hour, omitted_day)
    return fleet


def _items(value: Any, cap: int) -> list[Any]:
    return value[:cap] if isinstance(value, list) else []


def _entries(value: Any, cap: int) -> Iterable[tuple[str, Any]]:
    if not isinstance(value, Mapping):
        return ()
    return itertools.islice(value.items(), cap)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, list) and len(value) == 2:
        first, second = value
        if type(first) is int and type(second) is int and first >= 0 and second >= 0:
            return first, second  # the common case, without the checks of `_count`
        return _count(first), _count(second)
    return 0, 0


def _add(into: dict[str, list[int]], key: str, value: Any) -> None:
    hour, day = _pair(value)
    if hour or day:
        was = into.get(key)
        if was is None:
            into[key] = [hour, day]
        else:
            was[0] += hour
            was[1] += day


def _technique_key(raw: str) -> tuple[str, str] | None:
    tactic, _, technique = raw.partition("/")
    if TACTIC_ID_RE.fullmatch(tactic) and (TECHNIQUE_ID_RE.fullmatch(technique)
                                           or SUB_TECHNIQUE_ID_RE.fullmatch(technique)):
        return tactic, technique
    return None


def _technique_of(tag: Mapping[str, Any]) -> str:
    return str(tag.get("sub_technique_id") or tag.get("technique_id"))


def _sample(item: Any, worker_id: str) -> Sample | None:
    if not isinstance(item, Mapping):
        return None
    tag, at = item.get("tag"), _count(item.get("at"))
    if not isinstance(tag, dict) or at <= 0 or \
            _technique_key(f"{tag.get('tactic')}/{_technique_of(tag)}") is None:
        return None
    return Sample(float(item["at"]), worker_id, tag)
