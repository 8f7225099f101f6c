"""Commit hints: a writer's hint wakes the publisher like NOTIFY; hostile, stale or
foreign hints read nothing; a flood of them is bounded by the gate."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from decnet.ttp.constants import (
    COMMIT_HINT_BURST,
    COMMIT_HINT_RATE,
    MAX_REVISION,
    TAIL_POLL_INTERVAL,
)
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.database.commithint import (
    HintGate,
    commit_subject,
    decode_hint,
    encode_hint,
    send_commit_hint,
)
from decnet.ttp.store.database.jetstream import ChangePublisher, NatsNames
from tests.ttp.store.database.test_publisher import NATS_URL, NEVER, publishing
from tests.ttp.store.helpers import open_store, seed
from tests.waiting import poll

pytestmark = pytest.mark.nats

GARBAGE = [
    b"", b"garbage", b"\xff\xfe", b"[]", b"{}", b"null", b'"x"',
    b'{"database":"x"}', b'{"revision":5}',
    b'{"database":"%s","revision":"5"}', b'{"database":"%s","revision":true}',
    b'{"database":"%s","revision":-1}', b'{"database":"%s","revision":0}',
    b'{"database":"%s","revision":5.0}',
    b'{"database":"%s","revision":' + str(MAX_REVISION + 1).encode() + b"}",
    b'{"database":"' + b"x" * 300 + b'","revision":5}',
    b'{"database":"%s","revision":5,"pad":"' + b"x" * 400 + b'"}',
    b'{"database":"another-database","revision":5}',
]


def test_a_hint_round_trips_and_garbage_decodes_to_nothing() -> None:
    assert decode_hint(encode_hint("db:1:2", 42)) == ("db:1:2", 42)
    for payload in GARBAGE:
        assert decode_hint(payload.replace(b"%s", b"db")) is None or b"another" in payload


async def test_a_writer_s_hint_wakes_the_publisher(db_url: str, names: NatsNames) -> None:
    """Another process commits and sends its hint: published with the poll an hour away
    (on MariaDB the hint is the only wake-up; elsewhere NOTIFY or the file may be first)."""
    async with open_store(db_url) as master, open_store(db_url) as operator:
        publisher = ChangePublisher(master.repo, NATS_URL, names, poll_interval=NEVER)
        async with publishing(publisher):
            start = publisher.published_revision
            await seed(operator, "R0001")
            await operator.set_state("R0001", RuleState(StateName.DISABLED), "t")
            head = await operator.repo.head()
            assert head.revision != start
            assert await send_commit_hint(NATS_URL, names, head)
            await poll(lambda: publisher.published_revision == head.revision, timeout=10,
                       message="the hinted revision published")
            await poll(lambda: publisher.stats.hints + publisher.stats.hints_stale >= 1,
                       timeout=10, message="the hint counted")
            if db_url.startswith("mysql"):
                assert publisher.stats.hints >= 1


async def test_hints_relax_the_mariadb_poll_to_the_safety_net(db_url: str,
                                                              names: NatsNames) -> None:
    async with open_store(db_url) as store:
        publisher = ChangePublisher(store.repo, NATS_URL, names)
        async with publishing(publisher):
            await seed(store, "R0001")
            assert await send_commit_hint(NATS_URL, names, await store.repo.head())
            await poll(lambda: publisher.poll_interval == TAIL_POLL_INTERVAL, timeout=10,
                       message="a 1 s poll once hints arrive")


async def _send(payloads: list[bytes], names: NatsNames) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        for payload in payloads:
            await nc.publish(commit_subject(names), payload)
        await nc.flush()
    finally:
        await nc.close()


async def test_hostile_and_foreign_hints_read_nothing(db_url: str, names: NatsNames) -> None:
    async with open_store(db_url) as store:
        await seed(store, "R0001")
        publisher = ChangePublisher(store.repo, NATS_URL, names, poll_interval=NEVER)
        async with publishing(publisher):
            head = await store.repo.head()
            published = publisher.published_revision
            before = store.repo.statements
            identity = head.identity.encode()
            # the last one, a hint already published, marks the end: one connection
            # keeps the order
            await _send([p.replace(b"%s", identity) for p in GARBAGE]
                        + [encode_hint(head.identity, head.revision)], names)
            await poll(lambda: publisher.stats.hints_stale == 1, timeout=10,
                       message="the marker hint")
            assert publisher.stats.hints_ignored == len(GARBAGE)
            assert publisher.stats.hints == 0
            assert publisher.published_revision == published
            if db_url.startswith("mysql"):  # nothing else wakes it there: nothing read
                assert store.repo.statements == before


async def test_a_flood_of_hints_is_bounded_by_the_gate(db_url: str, names: NatsNames) -> None:
    """Hints naming a revision that never committed: each one passed costs a read, so
    at most the gate's rate pass; the rest merge into one later wake-up."""
    async with open_store(db_url) as store:
        await seed(store, "R0001")
        publisher = ChangePublisher(store.repo, NATS_URL, names, poll_interval=NEVER)
        async with publishing(publisher):
            head = await store.repo.head()
            flood = 500
            started = time.monotonic()
            await _send([encode_hint(head.identity, head.revision + 1000 + n)
                         for n in range(flood)]
                        + [encode_hint(head.identity, head.revision)], names)
            await poll(lambda: publisher.stats.hints_stale == 1, timeout=10,
                       message="the marker hint")
            elapsed = time.monotonic() - started
            assert publisher.stats.hints <= COMMIT_HINT_BURST + COMMIT_HINT_RATE * elapsed + 1
            assert publisher.stats.hints < flood
            assert publisher.published_revision == head.revision


async def test_the_gate_merges_what_exceeds_its_budget() -> None:
    woken: list[int] = []
    gate = HintGate(woken.append, rate=20.0, burst=3)
    try:
        for revision in range(1, 11):
            gate.offer(revision)
        assert woken == [1, 2, 3]
        await poll(lambda: woken[-1] == 10, timeout=5, interval=0.01,
                   message="the merged wake-up")
        assert woken == [1, 2, 3, 10]
        assert gate.deferred == 7
    finally:
        gate.close()


async def test_a_hint_to_no_nats_gives_up_promptly() -> None:
    """A server that never answers: False within the timeout, never an exception."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)  # never answers
    port = server.sockets[0].getsockname()[1]
    try:
        async with open_store("sqlite+aiosqlite://") as store:
            head = await store.repo.head()
            assert not await send_commit_hint(f"nats://127.0.0.1:{port}", NatsNames("t"), head)
    finally:
        server.close()
