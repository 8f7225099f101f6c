"""The fleet's tag counts for the console's pages, when the master has the workers' reports.

Without `master --nats` there are none (`None`: the pages say so rather than show zeros);
while NATS cannot be reached the pages render without them (logged).
"""

from __future__ import annotations

import logging
import time

from decnet.swarm.fleet import FleetSource
from decnet.swarm.fleet_hits import PERIODS, FleetHits, sum_hits

log = logging.getLogger(__name__)


async def fleet_hits(source: FleetSource | None) -> FleetHits | None:
    """The sum of the workers' tag counts now, or None without reports to read."""
    if source is None:
        return None
    try:
        reports = await source.reports()
    except Exception as exc:  # NATS away: the page still renders, without the counts
        log.warning("fleet reports unavailable: %s", type(exc).__name__)
        return None
    return sum_hits(reports, time.time())


def period_of(text: str | None) -> str:
    """The `period` query parameter, `hour` unless it names another known period."""
    return text if text is not None and text in PERIODS else "hour"
