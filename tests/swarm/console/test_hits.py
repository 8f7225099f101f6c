"""`FleetHitsView`: one read and sum of the reports for the pages that ask at once, reused
for `max_age` seconds; none without a source; none (not an error) while NATS is away."""

from __future__ import annotations

import asyncio
from typing import Any

from decnet.swarm.console.hits import FleetHitsView, period_of
from decnet.swarm.fleet import FleetSource
from decnet.ttp.store.database.jetstream import NatsNames


class CountingSource(FleetSource):
    """A source whose reports are given, counting the reads (NATS is not the subject)."""

    reads = 0
    failing = False

    async def reports(self) -> list[dict[str, Any]]:
        type(self).reads += 1
        await asyncio.sleep(0)
        if self.failing:
            raise ConnectionError("NATS away")
        return [{"worker_id": "w1", "tags": {"rules": {"R0001": [1, 2]}}}]


async def test_pages_asking_at_once_share_one_read() -> None:
    CountingSource.reads = 0
    view = FleetHitsView(CountingSource("nats://unused", NatsNames("t")), max_age=60)
    results = await asyncio.gather(*(view.get() for _ in range(10)))
    assert CountingSource.reads == 1
    assert {r.rule("R0001").day for r in results if r is not None} == {2}
    await view.get()
    assert CountingSource.reads == 1
    fresh = FleetHitsView(CountingSource("nats://unused", NatsNames("t")), max_age=0)
    await fresh.get()
    await fresh.get()
    assert CountingSource.reads == 3


async def test_no_source_or_no_nats_gives_no_counts() -> None:
    assert await FleetHitsView(None).get() is None
    CountingSource.failing = True
    try:
        assert await FleetHitsView(CountingSource("nats://unused", NatsNames("t"))).get() is None
    finally:
        CountingSource.failing = False


def test_an_unknown_period_is_the_hour() -> None:
    assert [period_of(p) for p in ("day", "hour", None, "week", "<x>")] == [
        "day", "hour", "hour", "hour", "hour"]
