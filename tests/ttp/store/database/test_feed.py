"""A worker's `ChangeFeed` on real NATS and a real database: it replays what it missed
from the stream without a database read, reads the database only for what the stream no
longer holds, and relies on the head beacon instead of a safety poll — and falls back to
the database when the publisher or the beacon is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import nats
import nats.js.errors
import pytest
from sqlalchemy import update

from decnet.ttp.store.base import RESYNC, STATE, RuleState, StateName, Subscription
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.database import feed as feed_module
from decnet.ttp.store.database.beacon import HeadBeacon, HeadWatch
from decnet.ttp.store.database.feed import ChangeFeed
from decnet.ttp.store.database.jetstream import ChangePublisher, NatsNames
from decnet.ttp.store.sql.models import RevisionRow
from tests.cancels import connect_with_a_cancel, stops
from tests.ttp.store.helpers import open_store, seed
from tests.waiting import next_change, no_change, poll

pytestmark = [pytest.mark.nats]

NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
OFFLINE_CHANGES = 50


@contextlib.asynccontextmanager
async def lease_holder(writer: DatabaseRuleStore, names: NatsNames, *, publish: bool = True,
                       ) -> AsyncIterator[tuple[ChangePublisher, list[asyncio.Task[None]]]]:
    """What the master holding the lease runs: the publisher (unless `publish` is false:
    one that died between commit and publish) and the head beacon, every 50 ms."""
    publisher = ChangePublisher(writer.repo, NATS_URL, names, poll_interval=0.01)
    beacon = HeadBeacon(writer.repo, NATS_URL, names, interval=0.05)
    tasks = [asyncio.create_task(beacon.run())]
    if publish:
        tasks.append(asyncio.create_task(publisher.run()))
    try:
        yield publisher, tasks
    finally:
        await stop(*tasks)


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def follow(worker: DatabaseRuleStore, names: NatsNames, *, safety_poll: float = 30.0,
           watch: HeadWatch | None = None) -> tuple[ChangeFeed, asyncio.Task[None]]:
    feed = ChangeFeed(NATS_URL, names, watch=watch)
    return feed, worker.start_tail(0.05, feed=feed, feed_poll_interval=safety_poll)


async def write_states(writer: DatabaseRuleStore, count: int, tag: str) -> list[str]:
    reasons = [f"{tag}{n}" for n in range(count)]
    for n, reason in enumerate(reasons):
        await writer.set_state("R0001", RuleState(
            StateName.DISABLED if n % 2 == 0 else StateName.CLIPPED,
            confidence_max=None if n % 2 == 0 else 0.5, reason=reason), "t")
    return reasons


async def caught_up(changes: Subscription, reasons: list[str]) -> list[str]:
    """The state changes announced until the last of `reasons`, then nothing more: each
    at most once and in order (states committed before a read of them collapse into the
    latest one, as they do when read from the database)."""
    seen: list[str] = []
    while not seen or seen[-1] != reasons[-1]:
        change = await next_change(changes, timeout=10)
        assert change.change_kind == STATE and isinstance(change.new_value, RuleState)
        seen.append(change.new_value.reason or "")
    await no_change(changes, 0.2)
    order = [reasons.index(reason) for reason in seen]
    assert order == sorted(set(order)), seen
    return seen


async def offline_across_changes(writer: DatabaseRuleStore, worker: DatabaseRuleStore,
                                 names: NatsNames, publisher: ChangePublisher,
                                 ) -> list[str]:
    """The worker follows the stream, goes offline (tail and NATS connection stopped)
    across 50 changes, which the publisher publishes meanwhile."""
    feed, task = follow(worker, names)
    await poll(feed.vouched, timeout=10, message="the feed up and vouched for")
    await stop(task)
    reasons = await write_states(writer, OFFLINE_CHANGES, "off")
    head = await writer.repo.head_revision()
    await poll(lambda: publisher.published_revision == head, timeout=10,
               message="the changes published")
    return reasons


@pytest.mark.parametrize("db_url", ["sqlite-file", "postgresql"], indirect=True)
async def test_a_worker_back_from_offline_replays_the_stream_without_a_database_read(
        db_url: str, names: NatsNames) -> None:
    async with open_store(db_url) as writer, open_store(db_url) as worker:
        await seed(writer, "R0001")
        async with lease_holder(writer, names) as (publisher, _):
            await worker.poll_once()
            changes = worker.subscribe_changes()
            reasons = await offline_across_changes(writer, worker, names, publisher)
            statements = worker.statements_issued
            feed, _task = follow(worker, names)
            await caught_up(changes, reasons)
            assert worker.tail.watermark == await writer.repo.head_revision()
            assert worker.statements_issued == statements  # not one database read
            assert (feed.stats.stream_resumes, feed.stats.database_resumes) == (1, 0)
            assert worker.tail.stats.push_gaps == 0
            await changes.aclose()


@pytest.mark.parametrize("db_url", ["sqlite-file"], indirect=True)
async def test_a_stream_trimmed_below_the_watermark_is_read_from_the_database(
        db_url: str, names: NatsNames) -> None:
    """The stream kept only the last 10 of the 50 changes the worker missed: the first
    one replayed is a gap, the 40 before it are read from the database, nothing is
    announced twice and the worker ends at the head without reloading."""
    async with open_store(db_url) as writer, open_store(db_url) as worker:
        await seed(writer, "R0001")
        async with lease_holder(writer, names) as (publisher, _):
            await worker.poll_once()
            changes = worker.subscribe_changes()
            reasons = await offline_across_changes(writer, worker, names, publisher)
            nc = await nats.connect(NATS_URL)
            try:
                await nc.jetstream().purge_stream(names.stream, keep=10)
            finally:
                await nc.close()
            statements = worker.statements_issued
            feed, _task = follow(worker, names)
            await caught_up(changes, reasons)
            assert worker.statements_issued > statements
            assert feed.stats.stream_resumes == 1  # the stream still held the last 10
            assert worker.tail.stats.push_gaps >= 1
            assert worker.tail.stats.resyncs == 0
            await changes.aclose()


@pytest.mark.parametrize("db_url", ["sqlite-file"], indirect=True)
async def test_a_beacon_vouches_for_the_worker_instead_of_the_safety_poll(
        db_url: str, names: NatsNames) -> None:
    """While the beacon comes the worker never polls, even with a safety poll of 0.2 s;
    once it stops (no lease holder), the safety poll takes over and finds a change that
    was committed and never published."""
    async with open_store(db_url) as writer, open_store(db_url) as worker:
        await seed(writer, "R0001")
        async with lease_holder(writer, names) as (_publisher, tasks):
            await worker.poll_once()
            changes = worker.subscribe_changes()
            feed, _task = follow(worker, names, safety_poll=0.2,
                                 watch=HeadWatch(stale_after=0.3))
            await poll(feed.vouched, timeout=10, message="the feed vouched for")
            polls, beacons = worker.tail.stats.polls, feed.stats.beacons
            await poll(lambda: feed.stats.beacons >= beacons + 20, timeout=10,
                       message="a second of beacons")
            assert worker.tail.stats.polls == polls
            await stop(*tasks)  # the lease holder is gone
            await poll(lambda: not feed.vouched(), timeout=5, message="the beacon stale")
            [reason] = await write_states(writer, 1, "unpublished")
            await caught_up(changes, [reason])
            assert worker.tail.stats.polls > polls
            assert feed.stats.beacon_reads == 0
            await changes.aclose()


@pytest.mark.parametrize("db_url", ["sqlite-file", "postgresql"], indirect=True)
async def test_a_publisher_dead_after_the_commit_is_covered_by_the_beacon(
        db_url: str, names: NatsNames) -> None:
    """The lease holder's publisher is dead but its beacon goes on: the head it announces
    is not delivered by the stream within the grace, so the worker reads it from the
    database (the change log up to that head, no safety poll)."""
    async with open_store(db_url) as writer, open_store(db_url) as worker:
        await seed(writer, "R0001")
        async with lease_holder(writer, names, publish=False):
            await worker.poll_once()
            changes = worker.subscribe_changes()
            feed, _task = follow(worker, names, watch=HeadWatch(grace=0.2))
            await poll(feed.vouched, timeout=10, message="the feed vouched for")
            polls = worker.tail.stats.polls
            reasons = await write_states(writer, 3, "lost")
            await caught_up(changes, reasons)
            assert feed.stats.beacon_reads >= 1
            assert worker.tail.stats.polls == polls
            assert worker.tail.watermark == await writer.repo.head_revision()
            await changes.aclose()


@pytest.mark.parametrize("db_url", ["sqlite-file"], indirect=True)
async def test_a_database_restored_to_an_older_revision_is_reloaded(
        db_url: str, names: NatsNames) -> None:
    """The beacon announces a head below the worker's watermark (the database was put
    back to an older revision, whose next changes would look like duplicates): the worker
    polls the database and reloads everything, as its safety poll used to find."""
    async with open_store(db_url) as writer, open_store(db_url) as worker:
        await seed(writer, "R0001")
        await write_states(writer, 3, "before")
        async with lease_holder(writer, names):
            await worker.poll_once()
            changes = worker.subscribe_changes()
            feed, _task = follow(worker, names, watch=HeadWatch(grace=0.2))
            await poll(feed.vouched, timeout=10, message="the feed vouched for")
            async with writer.repo.engines.engine.begin() as conn:
                await conn.execute(update(RevisionRow).where(RevisionRow.id == 1).values(
                    revision=RevisionRow.revision - 2))
            change = await next_change(changes, timeout=10)
            assert change.change_kind == RESYNC
            assert worker.tail.stats.resyncs == 1
            assert worker.tail.watermark == await writer.repo.head_revision()
            await changes.aclose()


async def test_one_cancel_stops_the_feed_when_nats_answers_with_it(
        db_url: str, names: NatsNames, monkeypatch: pytest.MonkeyPatch) -> None:
    """nats-py waits with `wait_for`: a connection that lands with the cancel (returned on
    Python 3.11) must not leave the feed waiting for the tail's view, or following."""
    connect_with_a_cancel(monkeypatch, feed_module)
    async with open_store(db_url) as worker:
        assert await stops(asyncio.create_task(ChangeFeed(NATS_URL, names).run(worker.tail)))
