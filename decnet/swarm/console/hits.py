"""The fleet's tag counts for the console's pages, when the master has the workers' reports.

Without `master --nats` there are none (`None`: the pages say so rather than show zeros);
while NATS cannot be reached the pages render without them (logged). The sum of a
thousand reports is computed off the event loop, at most once per
`CONSOLE_HITS_MAX_AGE` seconds, however many pages ask meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time

from decnet.swarm.fleet import FleetSource
from decnet.swarm.fleet_hits import PERIODS, FleetHits, sum_hits
from decnet.ttp.constants import CONSOLE_HITS_MAX_AGE

log = logging.getLogger(__name__)


class FleetHitsView:
    """The fleet's latest tag counts, summed from `source`'s reports and kept briefly."""

    def __init__(self, source: FleetSource | None,
                 max_age: float = CONSOLE_HITS_MAX_AGE) -> None:
        self.source = source
        self.max_age = max_age
        self._latest: tuple[float, FleetHits | None] | None = None
        self._pending: asyncio.Task[FleetHits | None] | None = None

    async def get(self) -> FleetHits | None:
        """The counts at most `max_age` seconds old, or None without reports to read."""
        if self.source is None:
            return None
        latest = self._latest
        if latest is not None and time.monotonic() - latest[0] < self.max_age:
            return latest[1]
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._read())
        return await asyncio.shield(self._pending)

    async def _read(self) -> FleetHits | None:
        assert self.source is not None
        started = time.monotonic()
        try:
            reports = await self.source.reports()
        except Exception as exc:  # NATS away: the page still renders, without the counts
            log.warning("fleet reports unavailable: %s", type(exc).__name__)
            return None
        hits = await asyncio.to_thread(sum_hits, reports, time.time())
        self._latest = (started, hits)
        return hits


def period_of(text: str | None) -> str:
    """The `period` query parameter, `hour` unless it names another known period."""
    return text if text is not None and text in PERIODS else "hour"
