"""What wakes the change publisher: its own process's commits, PostgreSQL's NOTIFY, a
SQLite file's writes; its poll (the safety net, or MariaDB's only way) per database."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import nats
import nats.js.errors
import pytest

from decnet.ttp.constants import PUBLISH_POLL_INTERVAL, TAIL_POLL_INTERVAL
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.database.jetstream import ChangePublisher, NatsNames, decode_entry
from decnet.ttp.store.sql.rows import LogEntry
from tests.ttp.store.helpers import open_store, seed
from tests.waiting import poll

pytestmark = pytest.mark.nats

NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
#: A poll that never comes within a test: whatever gets published was woken up.
NEVER = 3600.0


@contextlib.asynccontextmanager
async def publishing(publisher: ChangePublisher) -> AsyncIterator[ChangePublisher]:
    task = asyncio.create_task(publisher.run())
    try:
        await poll(lambda: publisher.published_revision is not None, timeout=10,
                   message="the publisher to start")
        yield publisher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def stream_revisions(names: NatsNames) -> list[int]:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(names.stream)
        return [decode_entry((await js.get_msg(names.stream, seq)).data or b"")[1].revision
                for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    finally:
        await nc.close()


async def test_this_process_s_commits_wake_the_publisher(db_url: str,
                                                         names: NatsNames) -> None:
    """The master's own writes (its sync) reach the stream without a read of the
    revision row: the repository tells the publisher which revision it committed."""
    async with open_store(db_url) as store:
        publisher = ChangePublisher(store.repo, NATS_URL, names, poll_interval=NEVER)
        async with publishing(publisher):
            await seed(store, "R0001")
            await store.set_state("R0001", RuleState(StateName.DISABLED), "t")
            head = await store.repo.head_revision()
            await poll(lambda: publisher.published_revision == head, timeout=10,
                       message="both writes published")
    assert (await stream_revisions(names))[-2:] == [head - 1, head]


async def test_another_writer_s_commits_wake_the_publisher(db_url: str,
                                                           names: NatsNames) -> None:
    """`state set` from another process: NOTIFY wakes it on PostgreSQL, a write to the
    file's log on SQLite; MariaDB has no such signal (its poll is the way, below)."""
    if db_url.startswith("mysql"):
        pytest.skip("MariaDB sends no commit signal: the publisher reads its revision row")
    async with open_store(db_url) as master, open_store(db_url) as operator:
        publisher = ChangePublisher(master.repo, NATS_URL, names, poll_interval=NEVER)
        async with publishing(publisher):
            await seed(operator, "R0001")
            first = await operator.repo.head_revision()
            # by now the publisher's LISTEN (or file watch) is up: what follows is woken
            await poll(lambda: publisher.published_revision == first, timeout=10,
                       message="the first write published")
            for n in range(5):
                await operator.set_state("R0001", RuleState(
                    StateName.DISABLED, reason=f"n{n}"), "t")
            head = await operator.repo.head_revision()
            await poll(lambda: publisher.published_revision == head, timeout=10,
                       message="the other writer's commits published")
    revisions = await stream_revisions(names)
    assert revisions == sorted(set(revisions)) and revisions[-1] == head


async def test_the_poll_is_a_safety_net_only_where_every_writer_wakes_the_publisher(
        db_url: str, names: NatsNames) -> None:
    async with open_store(db_url) as store:
        publisher = ChangePublisher(store.repo, NATS_URL, names)
        async with publishing(publisher):
            expected = (PUBLISH_POLL_INTERVAL if db_url.startswith("mysql")
                        else TAIL_POLL_INTERVAL)
            await poll(lambda: publisher.poll_interval == expected, timeout=5,
                       message=f"a poll every {expected} s")


async def test_every_published_entry_is_announced_once_in_order(
        db_url: str, names: NatsNames) -> None:
    announced: list[tuple[str, LogEntry]] = []
    async with open_store(db_url) as store:
        publisher = ChangePublisher(store.repo, NATS_URL, names,
                                    announce=lambda *item: announced.append(item))
        async with publishing(publisher):
            start = publisher.published_revision
            await seed(store, "R0001")
            await store.set_state("R0001", RuleState(StateName.CLIPPED, confidence_max=0.5),
                                  "t")
            await store.delete_rule("R0001")
            head = (await store.repo.head()).revision
            await poll(lambda: publisher.published_revision == head, timeout=10,
                       message="published")
        identity = (await store.repo.head()).identity
    assert start is not None
    assert [entry.revision for _, entry in announced] == list(range(start + 1, head + 1))
    assert {who for who, _ in announced} == {identity}


def test_an_in_memory_database_is_written_by_this_process_only() -> None:
    store = DatabaseRuleStore()
    publisher = ChangePublisher(store.repo, NATS_URL, NatsNames("x"))
    assert publisher.poll_interval == TAIL_POLL_INTERVAL  # its commits wake it: a safety net


async def test_an_idle_publisher_on_a_watched_file_reads_the_database_rarely(
        db_url: str, names: NatsNames) -> None:
    """Once a write was published, the file's later events (and none) cost at most a
    read or two, not a loop: its poll is the 1 s safety net."""
    if not db_url.startswith("sqlite"):
        pytest.skip("the file watch is SQLite's")
    async with open_store(db_url) as writer, open_store(db_url) as master:
        publisher = ChangePublisher(master.repo, NATS_URL, names)
        async with publishing(publisher):
            await poll(lambda: publisher.poll_interval == TAIL_POLL_INTERVAL, timeout=5,
                       message="the file watched")
            await writer.set_state("R0001", RuleState(StateName.DISABLED), "t")
            head = await writer.repo.head_revision()
            await poll(lambda: publisher.published_revision == head, timeout=10,
                       message="published")
            before = master.repo.statements
            await asyncio.sleep(0.5)  # a quiet window: what does the publisher read?
            assert master.repo.statements - before <= 2
