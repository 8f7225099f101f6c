"""The head beacon: its wire format, a worker's reading of it (`HeadWatch`, on a clock of
the test's own), and the lease holder's `HeadBeacon` on real NATS."""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlparse

import nats
import pytest
from nats.aio.msg import Msg

from decnet.ttp.store.database import jetstream as jetstream_module
from decnet.ttp.store.database.beacon import (
    HeadBeacon,
    HeadWatch,
    Verdict,
    decode_beacon,
    encode_beacon,
)
from decnet.ttp.store.database.jetstream import NatsNames
from tests.cancels import connect_with_a_cancel, stops
from tests.services import require_service
from tests.ttp.store.helpers import open_store, seed

NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_beacon_round_trips() -> None:
    assert decode_beacon(encode_beacon("db-1", 42)) == ("db-1", 42)


@pytest.mark.parametrize("data", [b"", b"\xff", b"[]", b'{"db": "x"}', b'{"head": 1}',
                                  b'{"db": 1, "head": 1}', b'{"db": "x", "head": "1"}',
                                  b'{"db": "x", "head": -1}', b'{"db": "x", "head": true}'])
def test_what_is_no_beacon_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a head beacon"):
        decode_beacon(data)


def test_a_watch_is_fresh_while_beacons_of_its_database_come() -> None:
    clock = Clock()
    watch = HeadWatch(grace=2.0, stale_after=5.0, monotonic=clock)
    assert not watch.fresh()  # never heard
    assert watch.observe("db", 10, "db", 10) is Verdict.WAIT
    assert watch.fresh()
    clock.now += 4.9
    assert watch.fresh()
    clock.now += 0.2
    assert not watch.fresh()  # stale: the tail goes back to its safety poll
    assert watch.observe("other", 10, "db", 10) is Verdict.WAIT
    assert not watch.fresh()  # another database's beacon vouches for nothing
    watch.observe("db", 10, "db", 10)
    watch.forget()
    assert not watch.fresh()


def test_a_head_not_delivered_within_the_grace_is_read() -> None:
    clock = Clock()
    watch = HeadWatch(grace=2.0, stale_after=5.0, monotonic=clock)
    assert watch.observe("db", 12, "db", 10) is Verdict.WAIT  # in flight, maybe
    clock.now += 1.0
    assert watch.observe("db", 12, "db", 11) is Verdict.WAIT
    clock.now += 1.0
    assert watch.observe("db", 13, "db", 11) is Verdict.READ  # 12 never came
    # the next beacon starts a new grace
    assert watch.observe("db", 13, "db", 11) is Verdict.WAIT
    clock.now += 1.0
    assert watch.observe("db", 14, "db", 13) is Verdict.WAIT  # caught up with 13: 14's grace
    clock.now += 1.9
    assert watch.observe("db", 14, "db", 13) is Verdict.WAIT
    clock.now += 0.1
    assert watch.observe("db", 14, "db", 13) is Verdict.READ
    assert watch.observe("db", 14, None, None) is Verdict.WAIT  # no view yet


def test_a_head_below_the_watermark_for_the_grace_is_checked() -> None:
    """A beacon read just before the last change is overtaken by the next one; a head that
    stays below the watermark is a database restored to an older revision: poll it."""
    clock = Clock()
    watch = HeadWatch(grace=2.0, stale_after=5.0, monotonic=clock)
    assert watch.observe("db", 9, "db", 10) is Verdict.WAIT
    clock.now += 1.0
    assert watch.observe("db", 10, "db", 10) is Verdict.WAIT  # overtaken: fine
    assert watch.observe("db", 7, "db", 10) is Verdict.WAIT
    clock.now += 1.0
    assert watch.observe("db", 7, "db", 10) is Verdict.WAIT
    clock.now += 1.0
    assert watch.observe("db", 7, "db", 10) is Verdict.CHECK
    assert watch.fresh()


def test_another_databases_beacon_is_checked_once_then_quiet() -> None:
    clock = Clock()
    watch = HeadWatch(grace=2.0, stale_after=5.0, quiet=30.0, monotonic=clock)
    assert watch.observe("other", 5, "db", 10) is Verdict.WAIT
    clock.now += 2.0
    assert watch.observe("other", 5, "db", 10) is Verdict.CHECK
    for _ in range(29):
        clock.now += 1.0
        assert watch.observe("other", 5, "db", 10) is Verdict.WAIT
    clock.now += 3.0
    assert watch.observe("other", 5, "db", 10) is Verdict.CHECK


@pytest.mark.nats
async def test_the_beacon_publishes_the_databases_head(db_url: str) -> None:
    parsed = urlparse(NATS_URL)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    names = NatsNames(f"t{uuid.uuid4().hex[:12]}")
    nc = await nats.connect(NATS_URL)
    heard: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    async def on_beacon(msg: Msg) -> None:
        heard.put_nowait(decode_beacon(msg.data))

    try:
        await nc.subscribe(names.head_subject, cb=on_beacon)
        async with open_store(db_url) as writer:
            beacon = HeadBeacon(writer.repo, NATS_URL, names, interval=0.02)
            task = asyncio.create_task(beacon.run())
            try:
                head = await writer.repo.head()
                assert await asyncio.wait_for(heard.get(), 5) == (head.identity, head.revision)
                await seed(writer, "R0001")
                moved = await writer.repo.head()
                while (got := await asyncio.wait_for(heard.get(), 5)) != \
                        (moved.identity, moved.revision):
                    assert got == (head.identity, head.revision)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await nc.close()


@pytest.mark.nats
async def test_one_cancel_stops_the_beacon_when_nats_answers_with_it(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """nats-py waits with `wait_for`: a connection that lands with the cancel (returned on
    Python 3.11) must not leave the beacon publishing."""
    parsed = urlparse(NATS_URL)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    connect_with_a_cancel(monkeypatch, jetstream_module)  # where the beacon connects
    async with open_store(db_url) as writer:
        beacon = HeadBeacon(writer.repo, NATS_URL, NatsNames(f"t{uuid.uuid4().hex[:12]}"),
                            interval=3600.0)
        assert await stops(asyncio.create_task(beacon.run()))
