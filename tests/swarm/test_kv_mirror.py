"""The master's live mirror of the fleet bucket (real NATS): a new report, a deleted one, an
expired one, NATS going away and coming back; the mirror's memory limits; the console's
overview with and without its fleet."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import nats
import orjson
import pytest
from nats.js.kv import KeyValue

from decnet.swarm import kv_mirror as kv_mirror_module
from decnet.swarm.console.mount import create_master_app
from decnet.swarm.fleet import FleetSource, fleet_bucket
from decnet.swarm.kv_mirror import KvMirror, MirrorLimits, MirrorUnavailable, _Copy
from decnet.ttp.store.database.jetstream import NatsNames
from decnet.ttp.store.sql.tokens import TokenTable
from tests.cancels import connect_with_a_cancel, stops
from tests.nats_server import own_nats_server
from tests.services import require_service
from tests.ttp.store.helpers import open_store, seed
from tests.waiting import poll


def shared_url() -> str:
    url = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
    parsed = urlparse(url)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    return url


def report(worker: str, revision: int = 1) -> bytes:
    return orjson.dumps({"worker_id": worker, "revision": revision, "ruleset_sha256": "a",
                         "reported_at": 1.0, "extra": {"kept": [1, 2]}})


class Bucket:
    """The fleet bucket of a fresh prefix, written the way workers write it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.names = NatsNames(f"t{uuid.uuid4().hex[:12]}")
        self.nc: Any = None
        self.kv: KeyValue | None = None

    async def open(self) -> KeyValue:
        self.nc = await nats.connect(self.url)
        self.kv = await fleet_bucket(self.nc, self.names)
        return self.kv

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.jetstream().delete_key_value(self.names.fleet_bucket)
            await self.nc.close()


@pytest.fixture
async def bucket() -> AsyncIterator[Bucket]:
    fleet = Bucket(shared_url())
    await fleet.open()
    try:
        yield fleet
    finally:
        await fleet.close()


async def workers(source: FleetSource) -> set[str]:
    return {str(r["worker_id"]) for r in await source.reports()}


@pytest.mark.nats
async def test_the_mirror_follows_puts_and_deletes(bucket: Bucket) -> None:
    assert bucket.kv is not None
    await bucket.kv.put("w1", report("w1"))
    source = FleetSource(bucket.url, bucket.names)
    try:
        reports = await source.reports()
        assert reports == [orjson.loads(report("w1"))]  # passed on unchanged
        version = source.version
        assert source.version == version  # nothing changed
        await bucket.kv.put("w2", report("w2"))
        await poll(lambda: _has(source, {"w1", "w2"}), message="the new report")
        assert source.version != version
        await bucket.kv.put("w1", report("w1", revision=7))

        async def updated() -> bool:
            return any(r.get("revision") == 7 for r in await source.reports())

        await poll(updated, message="the updated report")
        await bucket.kv.delete("w1")
        await poll(lambda: _has(source, {"w2"}), message="the deleted report gone")
        await bucket.kv.purge("w2")
        await poll(lambda: _has(source, set()), message="the purged report gone")
    finally:
        await source.close()


async def _has(source: FleetSource, expected: set[str]) -> bool:
    try:
        return await workers(source) == expected
    except MirrorUnavailable:
        return False


@pytest.mark.nats
async def test_a_report_past_the_buckets_ttl_is_dropped(bucket: Bucket) -> None:
    assert bucket.kv is not None
    await bucket.kv.put("w1", report("w1"))
    source = FleetSource(bucket.url, bucket.names)
    try:
        assert await workers(source) == {"w1"}
        ttl = (await bucket.kv.status()).ttl
        assert ttl
        now = source.mirror.clock()
        source.mirror.clock = lambda: now + ttl + 1  # the server expired it, silently
        assert await workers(source) == set()
    finally:
        await source.close()


@pytest.mark.nats
async def test_nats_going_away_reads_as_unavailable_then_recovers(tmp_path: Path) -> None:
    async with own_nats_server(tmp_path) as server:
        fleet = Bucket(server.url)
        kv = await fleet.open()
        await kv.put("w1", report("w1"))
        await fleet.nc.close()
        source = FleetSource(server.url, fleet.names)
        try:
            assert await workers(source) == {"w1"}
            await server.stop()

            async def unavailable() -> bool:
                try:
                    await asyncio.wait_for(source.reports(), 5)  # never hangs
                except MirrorUnavailable:
                    return True
                return False

            await poll(unavailable, timeout=10, interval=0.1, message="fleet unavailable")
            await server.start()  # same port, same store: the report is still there
            await poll(lambda: _has(source, {"w1"}), timeout=15, interval=0.1,
                       message="the mirror back")
        finally:
            await source.close()


@pytest.mark.nats
async def test_a_master_whose_nats_is_down_reads_as_unavailable_at_once(tmp_path: Path) -> None:
    async with own_nats_server(tmp_path) as server:
        url = server.url
    source = FleetSource(url, NatsNames("down"))
    try:
        with pytest.raises(MirrorUnavailable):
            await asyncio.wait_for(source.reports(), 10)
    finally:
        await source.close()


@pytest.mark.nats
async def test_the_overview_shows_the_fleet_then_says_it_is_unavailable(
        tmp_path: Path) -> None:
    async with own_nats_server(tmp_path) as server, open_store() as store:
        await seed(store, "R0001")
        await TokenTable(store.repo).create("alice", "viewer", "dttp_alice-secret", None)
        fleet = Bucket(server.url)
        kv = await fleet.open()
        for n in range(3):
            await kv.put(f"worker-{n}", report(f"worker-{n}"))
        await fleet.nc.close()
        source = FleetSource(server.url, fleet.names)
        transport = httpx.ASGITransport(app=create_master_app(store, fleet=source))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
                login = (await client.get("/ui/login")).text
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
                assert csrf is not None
                await client.post("/ui/login", data={"token": "dttp_alice-secret",
                                                     "csrf_token": csrf.group(1)})
                page = (await client.get("/ui/")).text
                assert 'id="fleet"' in page and "worker-2" in page
                await server.stop()

                async def says_unavailable() -> bool:
                    text = (await client.get("/ui/")).text
                    return 'id="fleet-unavailable"' in text and "worker-2" not in text

                await poll(says_unavailable, timeout=10, interval=0.1,
                           message="the overview saying the fleet is unavailable")
                metrics = (await client.get("/metrics")).text
                assert "# fleet reports unavailable" in metrics
                assert "decnet_ttp_fleet_head_revision 1" in metrics
        finally:
            await source.close()


LIMITS = MirrorLimits(max_keys=2, max_bytes=100, max_value=60)


def test_the_copy_keeps_to_its_limits() -> None:
    copy = _Copy(LIMITS, "test")
    copy.put("a", b'{"n": 1}', 0.0)
    copy.put("big", b'{"x": "' + b"y" * 80 + b'"}', 0.0)  # over max_value: unreadable
    assert copy.items["a"].value == {"n": 1} and copy.items["big"].value is None
    copy.put("c", b'{"n": 3}', 0.0)  # a third key: left out
    assert set(copy.items) == {"a", "big"} and copy.refused == 1
    copy.delete("big")
    copy.put("c", b'{"n": 3}', 0.0)
    copy.put("a", b"not json", 0.0)
    assert copy.items["c"].value == {"n": 3} and copy.items["a"].value is None
    assert copy.bytes == len(b'{"n": 3}') + len(b"not json")
    copy.put("c", b'{"s": "' + b"z" * 50 + b'"}', 0.0)  # fits one value, not the budget
    copy.put("a", b'{"s": "' + b"z" * 50 + b'"}', 0.0)
    assert copy.bytes <= LIMITS.max_bytes and copy.items["a"].value is None
    copy.expire(oldest=1.0)
    assert copy.items == {} and copy.bytes == 0


@pytest.mark.nats
async def test_one_cancel_stops_the_mirror_when_nats_answers_with_it(
        bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    """nats-py waits with `wait_for`: a connection that lands with the cancel (returned on
    Python 3.11) must not leave the mirror following the bucket."""
    connect_with_a_cancel(monkeypatch, kv_mirror_module)
    mirror = KvMirror(bucket.url, lambda nc: fleet_bucket(nc, bucket.names), LIMITS,
                      what="the cancelled mirror", check=3600.0)
    mirror.start()
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == "mirror the cancelled mirror"]
    assert await stops(task)
