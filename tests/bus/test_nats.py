"""NatsBus against a real NATS server with JetStream (`DECNET_TTP_NATS_URL`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from decnet.bus import Bus, BusMessage, ttp_rule_reloaded, ttp_rule_state
from decnet.bus.errors import BusClosedError, BusError, BusUnavailableError
from decnet.bus.nats import NatsBus
from decnet.bus.topics import RULE_TOPICS
from tests.services import require_service
from tests.tcp_proxy import TcpProxy
from tests.waiting import next_change, poll

pytestmark = pytest.mark.nats

NATS_URL = os.environ.get("DECNET_TTP_NATS_URL", "nats://127.0.0.1:4222")
TEST_STREAM_PREFIX = "DECNET_TTP_TEST_"
STALE_AFTER = timedelta(minutes=10)

Connect = Callable[..., Awaitable[NatsBus]]


@pytest.fixture
def nats_url() -> str:
    parsed = urlparse(NATS_URL)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    return NATS_URL


@pytest.fixture
async def admin(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """A plain nats-py JetStream context, to inspect and clean up streams."""
    nc = await nats.connect(nats_url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def _other_rule_streams(js: JetStreamContext) -> list[str]:
    """Streams already capturing the rule topics (streams may not overlap).

    Test streams left behind by a crashed run are deleted once they are stale.
    """
    found = []
    for info in await js.streams_info():
        if RULE_TOPICS not in (info.config.subjects or []):
            continue
        name = info.config.name or ""
        created = info.created
        if name.startswith(TEST_STREAM_PREFIX) and created is not None:
            age = datetime.now(UTC) - datetime.fromisoformat(str(created).replace("Z", "+00:00"))
            if age > STALE_AFTER:
                await js.delete_stream(name)
                continue
        found.append(name)
    return found


@pytest.fixture
async def stream(admin: JetStreamContext) -> AsyncIterator[str]:
    """A fresh stream name; the stream is deleted after the test."""

    async def rule_topics_free() -> bool:
        return not await _other_rule_streams(admin)

    # Another test run on the same server holds the rule topics: wait for its teardown.
    await poll(
        rule_topics_free,
        timeout=30,
        interval=0.2,
        message=f"no other stream capturing {RULE_TOPICS}",
    )
    name = f"{TEST_STREAM_PREFIX}{uuid.uuid4().hex}"
    yield name
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await admin.delete_stream(name)


@pytest.fixture
async def connect(nats_url: str, stream: str) -> AsyncIterator[Connect]:
    """`await connect(**options)`: a NatsBus on the test stream, closed after the test."""
    buses: list[NatsBus] = []

    async def make(**options: object) -> NatsBus:
        options.setdefault("stream", stream)
        url = options.pop("url", nats_url)
        bus = await NatsBus.connect(url, **options)  # type: ignore[arg-type]
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await asyncio.wait_for(bus.close(), 10)


async def _stored(admin: JetStreamContext, stream: str, count: int) -> None:
    """Wait until the stream holds `count` messages (publish is fire-and-forget)."""

    async def enough() -> bool:
        return (await admin.stream_info(stream)).state.messages >= count

    await poll(enough, timeout=5, message=f"{count} messages stored in {stream}")


async def test_connect_creates_the_stream(
    connect: Connect, admin: JetStreamContext, stream: str
) -> None:
    bus = await connect()
    assert isinstance(bus, Bus)
    assert bus.stream == stream
    assert bus.is_connected
    info = await admin.stream_info(stream)
    assert info.config.subjects == [RULE_TOPICS]
    again = await connect()  # an existing stream is left as it is
    assert again.stream == stream


async def test_connect_adds_the_rule_subjects_to_an_existing_stream(
    connect: Connect, admin: JetStreamContext, stream: str
) -> None:
    other = f"decnet.test.{uuid.uuid4().hex}.>"
    await admin.add_stream(StreamConfig(name=stream, subjects=[other]))
    await connect()
    info = await admin.stream_info(stream)
    assert info.config.subjects == [other, RULE_TOPICS]


async def test_publish_subscribe_with_wildcards(connect: Connect) -> None:
    bus = await connect()
    states = await bus.subscribe("ttp.rule.state.*")
    everything = await bus.subscribe(RULE_TOPICS)
    assert states.jetstream and everything.jetstream

    await bus.publish(ttp_rule_reloaded("R1"), b"definition")
    await bus.publish(ttp_rule_state("R1"), b"disabled")
    await bus.publish(ttp_rule_state("R2"), b"enabled")

    assert await next_change(states) == BusMessage("ttp.rule.state.R1", b"disabled")
    assert await next_change(states) == BusMessage("ttp.rule.state.R2", b"enabled")
    assert [await next_change(everything) for _ in range(3)] == [
        BusMessage("ttp.rule.reloaded.R1", b"definition"),
        BusMessage("ttp.rule.state.R1", b"disabled"),
        BusMessage("ttp.rule.state.R2", b"enabled"),
    ]


async def test_core_subjects_outside_the_stream(connect: Connect) -> None:
    bus = await connect()
    base = f"decnet.test.{uuid.uuid4().hex}"
    sub = await bus.subscribe(f"{base}.*")
    assert not sub.jetstream
    await bus.publish(f"{base}.a.b", b"not matched")
    await bus.publish(f"{base}.a", b"matched")
    assert await next_change(sub) == BusMessage(f"{base}.a", b"matched")
    with pytest.raises(ValueError, match="outside"):
        await bus.subscribe(f"{base}.*", durable="d")
    with pytest.raises(ValueError, match="outside"):
        await bus.subscribe(f"{base}.*", deliver="all")


async def test_a_consumer_that_connects_after_the_publish_receives_it(
    connect: Connect, admin: JetStreamContext, stream: str
) -> None:
    publisher = await connect()
    await publisher.publish(ttp_rule_state("R7"), b"clipped")
    await publisher.publish(ttp_rule_reloaded("R7"), b"v2")
    await _stored(admin, stream, 2)

    late = await connect()
    history = await late.subscribe(RULE_TOPICS, deliver="all")
    assert await next_change(history) == BusMessage("ttp.rule.state.R7", b"clipped")
    assert await next_change(history) == BusMessage("ttp.rule.reloaded.R7", b"v2")

    only_new = await late.subscribe(RULE_TOPICS)  # deliver="new": history skipped
    await publisher.publish(ttp_rule_state("R8"), b"live")
    assert await next_change(only_new) == BusMessage("ttp.rule.state.R8", b"live")
    assert await next_change(history) == BusMessage("ttp.rule.state.R8", b"live")


async def test_a_restarted_durable_consumer_resumes_where_it_left_off(
    connect: Connect, admin: JetStreamContext, stream: str
) -> None:
    durable = f"worker_{uuid.uuid4().hex[:8]}"
    first_life = await connect()
    sub = await first_life.subscribe(RULE_TOPICS, durable=durable, deliver="all")
    assert sub.durable == durable
    await first_life.publish(ttp_rule_state("R1"), b"one")
    await first_life.publish(ttp_rule_state("R1"), b"two")
    assert (await next_change(sub)).data == b"one"
    await first_life.close()  # "two" was delivered but never taken: handed back

    publisher = await connect()
    await publisher.publish(ttp_rule_state("R1"), b"three")
    await _stored(admin, stream, 3)

    second_life = await connect()
    resumed = await second_life.subscribe(RULE_TOPICS, durable=durable, deliver="all")
    assert (await next_change(resumed)).data == b"two"
    assert (await next_change(resumed)).data == b"three"


async def test_durable_prefix_makes_plain_subscriptions_durable(
    connect: Connect, admin: JetStreamContext, stream: str
) -> None:
    prefix = f"host_{uuid.uuid4().hex[:8]}"
    bus = await connect(durable_prefix=prefix)
    sub = await bus.subscribe(RULE_TOPICS)
    assert sub.durable is not None and sub.durable.startswith(f"{prefix}_")
    assert bus.durable_name(RULE_TOPICS, None) == sub.durable
    assert bus.durable_name(RULE_TOPICS, "x") == f"{prefix}_x"
    info = await admin.consumer_info(stream, sub.durable)
    assert info.config.filter_subject == RULE_TOPICS
    await bus.publish(ttp_rule_state("R1"), b"x")
    assert (await next_change(sub)).data == b"x"


async def test_a_durable_name_is_tied_to_its_pattern(connect: Connect) -> None:
    bus = await connect()
    name = f"d_{uuid.uuid4().hex[:8]}"
    sub = await bus.subscribe("ttp.rule.state.*", durable=name)
    await sub.aclose()
    with pytest.raises(BusError, match="follows"):
        await bus.subscribe("ttp.rule.reloaded.*", durable=name)
    with pytest.raises(ValueError, match="durable name"):
        await bus.subscribe(RULE_TOPICS, durable="bad.name")


async def test_invalid_topics_and_closed_bus(connect: Connect) -> None:
    bus = await connect()
    with pytest.raises(ValueError, match="wildcard"):
        await bus.publish("ttp.rule.state.*", b"x")
    with pytest.raises(ValueError, match="last token"):
        await bus.subscribe("ttp.>.x")
    with pytest.raises(TypeError):
        await bus.publish("ttp.rule.state.R1", "text")  # type: ignore[arg-type]
    await bus.close()
    await bus.close()  # idempotent
    with pytest.raises(BusClosedError):
        await bus.publish("ttp.rule.state.R1", b"x")
    with pytest.raises(BusClosedError):
        await bus.subscribe(RULE_TOPICS)


async def test_close_ends_subscribers_promptly_even_with_unread_messages(
    connect: Connect,
) -> None:
    bus = await connect()
    unread = await bus.subscribe(RULE_TOPICS)
    waiting = await bus.subscribe("ttp.rule.state.*")
    for i in range(20):
        await bus.publish(ttp_rule_reloaded(f"R{i}"), b"x")
    await poll(lambda: unread._sub.pending_msgs >= 20, message="20 messages delivered")
    task = asyncio.ensure_future(anext(waiting))
    await asyncio.sleep(0)  # the task runs up to its wait
    await asyncio.wait_for(bus.close(), 5)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(task, 5)


async def test_abandoned_subscription_is_unsubscribed(connect: Connect) -> None:
    bus = await connect()
    nc: Client = bus._nc
    baseline = len(nc._subs)
    base = f"decnet.test.{uuid.uuid4().hex}"

    async def publish_once_subscribed() -> None:
        await poll(lambda: len(nc._subs) > baseline, message="the subscription")
        await bus.publish(f"{base}.x", b"first")

    publisher = asyncio.ensure_future(publish_once_subscribed())
    async for message in await bus.subscribe(f"{base}.>"):
        assert message.data == b"first"
        break
    await asyncio.wait_for(publisher, 5)
    gc.collect()
    await poll(lambda: len(nc._subs) == baseline, message="the abandoned subscription to go")


async def test_connect_to_nothing_fails_fast() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(BusUnavailableError, match="not reachable"):
        # bounded: a connect that retried forever would time out here instead
        await asyncio.wait_for(
            NatsBus.connect(f"nats://127.0.0.1:{port}", connect_timeout=1.0), 30)


async def test_survives_a_broken_connection(connect: Connect, nats_url: str) -> None:
    parsed = urlparse(nats_url)
    async with TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 4222) as proxy:
        watcher = await connect()
        seen = await watcher.subscribe(RULE_TOPICS)
        flaky = await connect(url=f"nats://127.0.0.1:{proxy.port}", pending_size=4096)
        await flaky.publish(ttp_rule_state("R1"), b"before")
        assert (await next_change(seen)).data == b"before"

        proxy.outage()
        await poll(lambda: not flaky.is_connected, message="the client to notice")
        await flaky.publish(ttp_rule_state("R1"), b"buffered")  # fits the buffer
        with pytest.raises(BusUnavailableError, match="unreachable"):
            await flaky.publish(ttp_rule_state("R1"), b"x" * 8192)

        proxy.resume()  # the client reconnects by itself
        await poll(lambda: flaky.is_connected, timeout=10, message="the reconnection")
        assert (await next_change(seen, timeout=10)).data == b"buffered"


async def test_close_while_disconnected_returns(connect: Connect, nats_url: str) -> None:
    parsed = urlparse(nats_url)
    async with TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 4222) as proxy:
        bus = await connect(url=f"nats://127.0.0.1:{proxy.port}")
        await bus.subscribe(RULE_TOPICS)
        proxy.outage()
        await poll(lambda: not bus.is_connected, message="the client to notice")
        await asyncio.wait_for(bus.close(), 5)
        with pytest.raises(BusClosedError):
            await bus.publish(ttp_rule_state("R1"), b"x")


async def test_two_namespaces_share_a_server_and_each_sees_the_design_topics(
        nats_url: str, admin: JetStreamContext) -> None:
    """Deployments with their own namespace: subjects `{namespace}.ttp.rule.…` on the
    wire, each retained in its bounded stream, subscribers see `ttp.rule.…` only."""
    spaces = [f"t{uuid.uuid4().hex[:12]}" for _ in range(2)]
    buses = [await NatsBus.connect(nats_url, stream=f"{space}_bus", namespace=space,
                                   max_msgs=3) for space in spaces]
    raw = await nats.connect(nats_url)
    try:
        wire = await raw.subscribe(f"{spaces[0]}.>")
        live = await buses[0].subscribe("ttp.rule.state.*")
        await buses[0].publish(ttp_rule_state("R0001"), b"a0")
        assert (await next_change(live)) == BusMessage("ttp.rule.state.R0001", b"a0")
        assert (await wire.next_msg(timeout=5)).subject == f"{spaces[0]}.ttp.rule.state.R0001"
        for n in range(1, 5):
            await buses[0].publish(ttp_rule_state("R0001"), f"a{n}".encode())
        await buses[1].publish(ttp_rule_state("R0001"), b"b")
        await _stored(admin, f"{spaces[1]}_bus", 1)

        async def all_five_in() -> bool:
            return (await admin.stream_info(f"{spaces[0]}_bus")).state.last_seq == 5

        await poll(all_five_in, timeout=5, message="five messages through the stream")
        info = await admin.stream_info(f"{spaces[0]}_bus")
        assert info.config.subjects == [f"{spaces[0]}.{RULE_TOPICS}"]
        assert info.state.messages == 3  # bounded: the oldest went first
        async with await buses[1].subscribe(RULE_TOPICS, deliver="all") as retained:
            assert (await next_change(retained)) == BusMessage("ttp.rule.state.R0001", b"b")
        await live.aclose()
    finally:
        await raw.close()
        for bus, space in zip(buses, spaces, strict=True):
            await bus.close()
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await admin.delete_stream(f"{space}_bus")


async def test_a_namespace_that_could_not_name_a_subject_token_is_refused(
        nats_url: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        await NatsBus.connect(nats_url, namespace="a.b")
