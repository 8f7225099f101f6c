"""The change stream: wire format, applying pushed entries by revision, and the
publisher (each revision once, in order, even with two publishers) on real NATS."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import nats
import pytest

from decnet.ttp.store.base import DEFINITION, STATE, RuleState, StateName
from decnet.ttp.store.database.jetstream import (
    ChangePublisher,
    NatsNames,
    decode_entry,
    encode_entry,
)
from decnet.ttp.store.sql.rows import Head, LogEntry
from tests.services import require_service
from tests.ttp.store.helpers import open_store, seed
from tests.waiting import next_change, no_change, poll

NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"


async def entries_of(store_url: str) -> tuple[str, list[LogEntry]]:
    async with open_store(store_url) as store:
        head = await store.repo.head()
        return head.identity, await store.repo.changes_since(0, head.revision, 1000)


async def write_some(url: str) -> None:
    async with open_store(url) as writer:
        await seed(writer, "R0001")
        await seed(writer, "R0002")
        await writer.set_state("R0001", RuleState(
            StateName.CLIPPED, confidence_max=0.25, reason="noisy",
            expires_at=datetime.now(UTC) + timedelta(hours=4)), "alice")
        await seed(writer, "R0001", version=2)
        await writer.delete_rule("R0002")


async def test_entries_round_trip_through_the_wire_format(db_url: str) -> None:
    await write_some(db_url)
    identity, entries = await entries_of(db_url)
    assert [e.change_kind for e in entries][:2] == [DEFINITION, DEFINITION]
    for entry in entries:
        assert decode_entry(encode_entry(entry, identity)) == (identity, entry)


@pytest.mark.parametrize("data", [b"", b"null", b"[]", b'{"db": "x"}', b"\xff",
                                  b'{"db":"x","revision":"a","rule_id":"R","kind":"state",'
                                  b'"rule":null,"state":null}',
                                  b'{"db":"x","revision":1,"rule_id":"R","kind":"nope",'
                                  b'"rule":null,"state":null}'])
def test_a_message_that_is_no_entry_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a change message"):
        decode_entry(data)


@pytest.mark.parametrize("prefix", ["", "a.b", "a*", "a>", "a b", "x" * 65])
def test_a_prefix_that_could_not_name_a_stream_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="NATS prefix"):
        NatsNames(prefix)


async def test_pushed_entries_apply_in_order_without_a_database_read(db_url: str) -> None:
    """The next revision applies with no statement; a duplicate does nothing; a gap is
    refused (the tail then reads the database)."""
    async with open_store(db_url) as worker:
        async with open_store(db_url) as writer:
            await seed(writer, "R0001")
            await writer.set_state("R0001", RuleState(StateName.DISABLED), "bob")
            await seed(writer, "R0002")
        identity, entries = await entries_of(db_url)
        start = worker.tail.watermark
        assert start is not None
        fresh = [e for e in entries if e.revision > start]
        assert len(fresh) == 3
        changes = worker.subscribe_changes()
        statements = worker.statements_issued
        tail = worker.tail
        assert tail.apply_pushed(identity, fresh[0])
        assert (await next_change(changes)).change_kind == DEFINITION
        assert tail.apply_pushed(identity, fresh[0])  # a duplicate: nothing happens
        assert not tail.apply_pushed(identity, fresh[2])  # a gap: refused
        assert tail.stats.push_gaps == 1 and tail.watermark == fresh[0].revision
        assert not tail.apply_pushed("another-database", fresh[1])
        assert tail.apply_pushed(identity, fresh[1])
        change = await next_change(changes)
        assert change.change_kind == STATE and isinstance(change.new_value, RuleState)
        assert change.new_value.state is StateName.DISABLED
        assert tail.apply_pushed(identity, fresh[2])
        assert (await next_change(changes)).rule_id == "R0002"
        await no_change(changes, 0.1)
        assert worker.statements_issued == statements
        assert tail.stats.pushed == 3 and tail.watermark == fresh[2].revision
        await changes.aclose()


@pytest.fixture
async def nats_url() -> AsyncIterator[str]:
    parsed = urlparse(NATS_URL)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    yield NATS_URL


@pytest.mark.nats
async def test_two_publishers_publish_each_revision_once_in_order(
        db_url: str, nats_url: str) -> None:
    """Two publishers over one database (a lease handover that overlaps): the stream
    holds every revision once, in order; one started later resumes where it stopped."""
    names = NatsNames(f"t{uuid.uuid4().hex[:12]}")
    async with open_store(db_url) as writer:
        base = await writer.repo.head_revision()
        first = ChangePublisher(writer.repo, nats_url, names, poll_interval=0.005)
        second = ChangePublisher(writer.repo, nats_url, names, poll_interval=0.005)
        tasks = [asyncio.create_task(p.run()) for p in (first, second)]
        try:
            await poll(lambda: first.published_revision is not None and
                       second.published_revision is not None, message="publishers up")
            for n in range(30):
                await writer.set_state("R0001", RuleState(
                    StateName.DISABLED if n % 2 else StateName.ENABLED), "t")
            head = await writer.repo.head_revision()
            await poll(lambda: max(first.published_revision or 0,
                                   second.published_revision or 0) >= head,
                       timeout=10, message="all published")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # a publisher starting now resumes from the stream: nothing published twice
        await writer.set_state("R0002", RuleState(StateName.DISABLED), "t")
        third = ChangePublisher(writer.repo, nats_url, names, poll_interval=0.005)
        task = asyncio.create_task(third.run())
        try:
            await poll(lambda: third.published_revision == head + 1, timeout=10,
                       message="resumed")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(names.stream)
        revisions = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(names.stream, seq)
            revisions.append(decode_entry(msg.data or b"")[1].revision)
        await js.delete_stream(names.stream)
        assert revisions == list(range(base + 1, head + 2))
    finally:
        await nc.close()


async def test_a_poll_racing_a_pushed_entry_is_no_step_back(db_url: str) -> None:
    """An entry pushed while a poll reads the revision row takes the watermark past the
    head the poll returns: that is no restored database, and nothing is reloaded."""
    async with open_store(db_url) as worker:
        old_head = await worker.repo.head()
        async with open_store(db_url) as writer:
            await seed(writer, "R0001")
        identity, entries = await entries_of(db_url)
        pushed = next(e for e in entries if e.revision > old_head.revision)
        tail = worker.tail
        read_head = worker.repo.head

        async def stale_head() -> Head:
            assert tail.apply_pushed(identity, pushed)  # arrives while the row is read
            return old_head

        worker.repo.head = stale_head  # type: ignore[method-assign]
        try:
            await worker.poll_once()
        finally:
            worker.repo.head = read_head  # type: ignore[method-assign]
        assert tail.stats.resyncs == 0
        assert tail.watermark == pushed.revision
