"""The fleet table of the overview page, from whatever reports the workers' revisions.

`fleet_rows` is the one place the console asks about workers: it returns an empty list
until a fleet-status module is wired in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from decnet.ttp.store.database import DatabaseRuleStore


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One worker as the overview shows it."""

    worker: str
    revision: int | None
    lag: int | None
    ruleset_hash: str | None
    last_report: datetime | None


async def fleet_rows(store: DatabaseRuleStore) -> list[FleetRow]:
    """Every worker's last report, behind first; empty while no fleet status exists."""
    return []
