"""The fleet table of the overview page: the workers' reports, when the master has them.

The master reads them from NATS (`master --nats`); without it there is no fleet to show
and the table is empty (the page says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from decnet.swarm.fleet import FleetSource


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One worker as the overview shows it."""

    worker: str
    revision: int | None
    lag: int | None
    ruleset_hash: str | None
    last_report: datetime | None
    status: str = "ok"


async def fleet_rows(source: FleetSource | None, head: int | None) -> list[FleetRow]:
    """Every worker's last report, the ones behind or silent first; empty without a
    source. Raises `MirrorUnavailable` while NATS cannot be reached (the page says so)."""
    if source is None:
        return []
    status = await source.status(head)
    now = datetime.now(UTC)
    rows = [FleetRow(w.worker_id, w.revision, w.lag, w.ruleset_sha256,
                     now - timedelta(seconds=w.age_s), w.status) for w in status.workers]
    return sorted(rows, key=lambda row: (row.status == "ok", -(row.lag or 0), row.worker))
