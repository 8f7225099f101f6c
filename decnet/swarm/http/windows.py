"""Counts per key over the last hour and the last day, in fixed time buckets.

Each key holds one counter a minute for the last `HITS_MINUTE_BUCKETS` minutes, one an
hour for the last `HITS_HOUR_BUCKETS` hours, and the two running totals, in one flat
array (86 eight-byte counters): "last hour" is the current minute and the 59 before it,
"last day" the current hour and the 23 before it. Buckets are numbered from the Unix
epoch, so the counts of several hosts line up. Time that steps back counts into the
newest bucket. Keys whose day total falls to zero are dropped; past `max_keys` keys,
counts go to `omitted`. Not thread-safe: its owner holds a lock.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from decnet.ttp.constants import HITS_HOUR_BUCKETS, HITS_MINUTE_BUCKETS

MINUTE, HOUR = 60, 3600
_HOURS = HITS_MINUTE_BUCKETS  # offset of the hour buckets in a key's array
_HOUR_TOTAL = _HOURS + HITS_HOUR_BUCKETS
_DAY_TOTAL = _HOUR_TOTAL + 1
_WIDTH = _DAY_TOTAL + 1
_ZEROS = array("Q", bytes(8 * _WIDTH))


@dataclass(frozen=True, slots=True)
class WindowTotals:
    """One key's counts in the last hour and the last day."""

    hour: int
    day: int


class WindowCounts:
    """Counts of keys in minute and hour buckets, with running hour and day totals."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self._counts: dict[str, array[int]] = {}
        #: epoch minute and hour of the newest buckets (-1: nothing counted yet)
        self._minute = -1
        self._hour = -1
        self.omitted = array("Q", _ZEROS)

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, counts: Mapping[str, int], now: float) -> None:
        """Count `counts` (key -> how many) at Unix time `now`."""
        self.advance(now)
        minute = self._minute % HITS_MINUTE_BUCKETS
        hour = _HOURS + self._hour % HITS_HOUR_BUCKETS
        table = self._counts
        for key, n in counts.items():
            row = table.get(key)
            if row is None:
                if len(table) >= self.max_keys:
                    row = self.omitted
                else:
                    row = table[key] = array("Q", _ZEROS)
            row[minute] += n
            row[hour] += n
            row[_HOUR_TOTAL] += n
            row[_DAY_TOTAL] += n

    def advance(self, now: float) -> None:
        """Move the newest buckets to the minute and hour of `now`, emptying the ones that
        leave the window (a clock that stepped back keeps the newest)."""
        minute, hour = int(now // MINUTE), int(now // HOUR)
        if minute > self._minute:
            self._expire(self._minute, minute, HITS_MINUTE_BUCKETS, 0, _HOUR_TOTAL)
            self._minute = minute
        if hour > self._hour:
            self._expire(self._hour, hour, HITS_HOUR_BUCKETS, _HOURS, _DAY_TOTAL)
            self._hour = hour
            self._counts = {k: row for k, row in self._counts.items() if row[_DAY_TOTAL]}

    def _expire(self, old: int, new: int, buckets: int, offset: int, total: int) -> None:
        if old < 0:
            return
        leaving = [offset + b % buckets for b in range(old + 1, min(new, old + buckets) + 1)]
        for row in (*self._counts.values(), self.omitted):
            for index in leaving:
                if row[index]:
                    row[total] -= row[index]
                    row[index] = 0

    def totals(self, now: float) -> dict[str, WindowTotals]:
        """Every key with a count in the last day, as of `now`."""
        self.advance(now)
        return {key: WindowTotals(row[_HOUR_TOTAL], row[_DAY_TOTAL])
                for key, row in self._counts.items() if row[_DAY_TOTAL]}

    def omitted_totals(self, now: float) -> WindowTotals:
        """Counts of keys past `max_keys`, in the last hour and day."""
        self.advance(now)
        return WindowTotals(self.omitted[_HOUR_TOTAL], self.omitted[_DAY_TOTAL])

    def per_minute(self, key: str, now: float) -> list[tuple[int, int]]:
        """(epoch minute, count) of `key` for each minute of the last hour with a count,
        oldest first."""
        self.advance(now)
        row = self._counts.get(key)
        if row is None:
            return []
        first = self._minute - HITS_MINUTE_BUCKETS + 1
        return [(m, row[m % HITS_MINUTE_BUCKETS]) for m in range(first, self._minute + 1)
                if row[m % HITS_MINUTE_BUCKETS]]

    def keys(self) -> Iterable[str]:
        return self._counts.keys()
