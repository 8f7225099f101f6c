"""What a worker tagged: tags per minute, hits per rule (events it tagged) and tags per
technique over the last hour and day, and the latest few tags of each technique as samples.

The evaluation thread counts one request's tags in a `TagTally` (no lock), then adds it
to the worker's `TagHits` under a lock taken once per request; the fleet report reads a
snapshot (`TagHits.report`) under the same lock. Everything is bounded, since every
event is an attacker's: keys by `HITS_MAX_*_KEYS`, samples by count and bytes, and the
report by `FLEET_REPORT_*` (see `report_fields` for its shape).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

import orjson

from decnet.swarm.http.windows import WindowCounts, WindowTotals
from decnet.ttp.constants import (
    FLEET_REPORT_MAX_RULES,
    FLEET_REPORT_MAX_TECHNIQUES,
    FLEET_REPORT_SAMPLE_BYTES,
    HITS_MAX_RULE_KEYS,
    HITS_MAX_TECHNIQUE_KEYS,
    HITS_SAMPLE_MAX_BYTES,
    HITS_SAMPLES_PER_TECHNIQUE,
)
from decnet.ttp.engine.events import Tag
from decnet.ttp.engine.jsonio import dump_tag_within

#: The one key of the all-tags counter.
ALL = "*"
DAY = 86_400.0


def technique_key(tag: Tag) -> str:
    """`TA0007/T1083`: the tag's tactic and its most specific technique id."""
    return f"{tag.tactic}/{tag.sub_technique_id or tag.technique_id}"


class TagTally:
    """One request's tags, counted by the evaluation thread event by event."""

    __slots__ = ("latest", "rules", "tags", "techniques")

    def __init__(self) -> None:
        self.tags = 0
        self.rules: Counter[str] = Counter()
        self.techniques: Counter[str] = Counter()
        #: the last tag of each technique key (the sample candidates)
        self.latest: dict[str, Tag] = {}

    def add(self, tags: list[Tag]) -> None:
        """Count one event's tags: a hit for each rule that tagged it (however many
        techniques it emits), a tag for each technique."""
        for tag in tags:
            key = technique_key(tag)
            self.techniques[key] += 1
            self.latest[key] = tag
        for rule_id in {tag.rule_id for tag in tags}:
            self.rules[rule_id] += 1
        self.tags += len(tags)


class TagHits:
    """A worker's tag counters and samples; `record` from the evaluation thread,
    `report_fields` from the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tags = WindowCounts(1)
        self.rules = WindowCounts(HITS_MAX_RULE_KEYS)
        self.techniques = WindowCounts(HITS_MAX_TECHNIQUE_KEYS)
        #: technique key -> its latest samples, (Unix time, tag JSON), newest last
        self._samples: dict[str, deque[tuple[float, bytes]]] = {}

    def record(self, tally: TagTally, now: float) -> None:
        """Add one request's tags, counted at `now`; one sample per technique per request."""
        if not tally.tags:
            return
        encoded = {key: dump_tag_within(tag, HITS_SAMPLE_MAX_BYTES)
                   for key, tag in tally.latest.items()}
        with self._lock:
            self.tags.add({ALL: tally.tags}, now)
            self.rules.add(tally.rules, now)
            self.techniques.add(tally.techniques, now)
            samples = self._samples
            for key, data in encoded.items():
                kept = samples.get(key)
                if kept is None:
                    if len(samples) >= HITS_MAX_TECHNIQUE_KEYS:
                        self._drop_oldest_samples()
                    kept = samples[key] = deque(maxlen=HITS_SAMPLES_PER_TECHNIQUE)
                kept.append((now, data))

    def _drop_oldest_samples(self) -> None:
        oldest = min(self._samples, key=lambda k: self._samples[k][-1][0])
        del self._samples[oldest]

    def report_fields(self, now: float) -> dict[str, Any]:
        """The `tags` object of the fleet report (JSON-ready; samples as raw JSON):

            {"per_minute": [[epoch_minute, tags], ...],        # last hour, non-zero
             "rules": {"R0001": [hour, day], ...},               # most hits first
             "techniques": {"TA0007/T1083": [hour, day], ...},
             "omitted": {"rules": [keys, hour, day], "techniques": [keys, hour, day]},
             "samples": [{"at": unix_time, "tag": {...}}, ...]}  # newest per technique first
        """
        with self._lock:
            per_minute = self.tags.per_minute(ALL, now)
            rules = self.rules.totals(now)
            techniques = self.techniques.totals(now)
            rules_over = self.rules.omitted_totals(now)
            techniques_over = self.techniques.omitted_totals(now)
            samples = {key: [s for s in kept if now - s[0] <= DAY]
                       for key, kept in self._samples.items()}
            self._samples = {k: v for k, v in self._samples.items() if samples[k]}
        rule_items, rules_omitted = _itemized(rules, FLEET_REPORT_MAX_RULES, rules_over)
        tech_items, tech_omitted = _itemized(techniques, FLEET_REPORT_MAX_TECHNIQUES,
                                             techniques_over)
        return {"per_minute": [list(pair) for pair in per_minute],
                "rules": rule_items, "techniques": tech_items,
                "omitted": {"rules": rules_omitted, "techniques": tech_omitted},
                "samples": _sample_list(samples)}


def _itemized(totals: dict[str, WindowTotals], cap: int,
              over: WindowTotals) -> tuple[dict[str, list[int]], list[int]]:
    """The `cap` keys with the most hits over the day (then by key), and the rest summed
    as [keys, hour, day] with the counts past the counters' own cap."""
    ranked = sorted(totals.items(), key=lambda item: (-item[1].day, item[0]))
    kept = {key: [t.hour, t.day] for key, t in ranked[:cap]}
    rest = ranked[cap:]
    omitted = [len(rest), over.hour + sum(t.hour for _, t in rest),
               over.day + sum(t.day for _, t in rest)]
    return kept, omitted


def _sample_list(samples: dict[str, list[tuple[float, bytes]]]) -> list[dict[str, Any]]:
    """Samples newest first, the newest of every technique before any second one, within
    `FLEET_REPORT_SAMPLE_BYTES`."""
    rounds: list[tuple[int, float, bytes]] = []
    for kept in samples.values():
        for depth, (at, data) in enumerate(reversed(kept)):
            rounds.append((depth, at, data))
    rounds.sort(key=lambda s: (s[0], -s[1]))
    out: list[dict[str, Any]] = []
    size = 0
    for _, at, data in rounds:
        size += len(data) + 32
        if size > FLEET_REPORT_SAMPLE_BYTES:
            break
        out.append({"at": round(at, 3), "tag": orjson.Fragment(data)})
    return out
