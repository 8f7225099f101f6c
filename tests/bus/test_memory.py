from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from decnet.bus import Bus, BusMessage, ttp_rule_reloaded, ttp_rule_state
from decnet.bus.errors import BusClosedError, BusError
from decnet.bus.memory import InProcessBus
from tests.waiting import next_change, no_change, poll


async def test_is_a_bus_and_delivers_a_message() -> None:
    bus = InProcessBus()
    assert isinstance(bus, Bus)
    sub = await bus.subscribe("ttp.rule.state.R1")
    await bus.publish("ttp.rule.state.R1", b"on")
    assert await next_change(sub) == BusMessage("ttp.rule.state.R1", b"on")
    await bus.close()


async def test_subscription_is_registered_when_subscribe_returns() -> None:
    bus = InProcessBus()
    sub = await bus.subscribe("a.>")
    assert bus.subscriber_count == 1
    await bus.publish("a.b", b"1")  # before anyone iterates
    assert sub.pending == 1
    assert (await next_change(sub)).data == b"1"


async def test_wildcards() -> None:
    bus = InProcessBus()
    one = await bus.subscribe("ttp.rule.state.*")
    rest = await bus.subscribe("ttp.rule.>")
    middle = await bus.subscribe("ttp.*.reloaded.R1")
    for topic in ("ttp.rule.state.R1", "ttp.rule.reloaded.R1", "ttp.rule", "ttp.other.x"):
        await bus.publish(topic, topic.encode())
    await bus.close()  # what is queued is still delivered, then iteration stops
    assert [m.topic async for m in one] == ["ttp.rule.state.R1"]
    assert [m.topic async for m in rest] == ["ttp.rule.state.R1", "ttp.rule.reloaded.R1"]
    assert [m.topic async for m in middle] == ["ttp.rule.reloaded.R1"]


async def test_order_is_publish_order_and_every_subscriber_gets_a_copy() -> None:
    bus = InProcessBus()
    first = await bus.subscribe("t.>")
    second = await bus.subscribe("t.*")
    sent = [BusMessage(f"t.{i % 3}", str(i).encode()) for i in range(500)]
    for message in sent:
        await bus.publish(message.topic, message.data)
    await bus.close()
    assert [m async for m in first] == sent
    assert [m async for m in second] == sent


async def test_a_waiting_subscriber_wakes_on_publish() -> None:
    bus = InProcessBus()
    sub = await bus.subscribe("x")
    waiting = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)  # the task runs up to its wait: the publish must wake it
    await bus.publish("x", b"hi")
    assert (await asyncio.wait_for(waiting, 5)).data == b"hi"


async def test_full_queue_drops_counts_and_logs_once_per_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = InProcessBus(max_pending=3)
    slow = await bus.subscribe("t.>")
    fast = await bus.subscribe("t.>")
    caplog.set_level(logging.WARNING, logger="decnet.bus.memory")

    for i in range(5):  # publish never blocks, even on a full queue
        await asyncio.wait_for(bus.publish("t.x", bytes([i])), 1)
        assert (await next_change(fast)).data == bytes([i])
    assert slow.dropped == 2
    assert fast.dropped == 0
    assert bus.dropped == 2
    drops = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(drops) == 1
    assert "t.>" in drops[0].getMessage()

    # The first three were kept, in order.
    assert [(await next_change(slow)).data for _ in range(3)] == [b"\0", b"\1", b"\2"]
    await bus.publish("t.x", b"after")  # room again: the burst is over
    assert any("caught up after dropping 2" in r.getMessage() for r in caplog.records)
    assert (await next_change(slow)).data == b"after"

    await fast.aclose()
    for _ in range(6):  # a second burst logs again, once
        await bus.publish("t.x", b"again")
    drops = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(drops) == 2
    assert slow.dropped == 5
    assert bus.dropped == 5


def test_max_pending_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        InProcessBus(max_pending=0)


async def test_aclose_unsubscribes_and_stops_iteration() -> None:
    bus = InProcessBus()
    sub = await bus.subscribe("a")
    await bus.publish("a", b"queued")
    await sub.aclose()
    await sub.aclose()  # idempotent
    assert sub.closed
    assert bus.subscriber_count == 0
    await bus.publish("a", b"later")
    assert [m async for m in sub] == []


async def test_aclose_wakes_a_waiting_consumer() -> None:
    bus = InProcessBus()
    sub = await bus.subscribe("a")

    async def drain() -> list[BusMessage]:
        return [m async for m in sub]

    task = asyncio.ensure_future(drain())
    await asyncio.sleep(0)  # the task runs up to its wait
    await sub.aclose()
    assert await asyncio.wait_for(task, 5) == []


async def test_async_with_closes_the_subscription() -> None:
    bus = InProcessBus()
    async with await bus.subscribe("a") as sub:
        assert bus.subscriber_count == 1
        await bus.publish("a", b"x")
        assert (await next_change(sub)).data == b"x"
    assert bus.subscriber_count == 0


async def test_subscriber_abandoned_with_break_is_unregistered() -> None:
    bus = InProcessBus(max_pending=10)

    async def publish_once_subscribed() -> None:
        await poll(lambda: bus.subscriber_count == 1, message="the subscription")
        await bus.publish("a.b", b"first")

    publisher = asyncio.ensure_future(publish_once_subscribed())
    async for message in await bus.subscribe("a.>"):
        assert message.data == b"first"
        break
    await asyncio.wait_for(publisher, 5)
    gc.collect()
    assert bus.subscriber_count == 0
    for _ in range(100):  # nothing accumulates, nothing is counted as dropped
        await bus.publish("a.b", b"more")
    assert bus.dropped == 0


async def test_dropped_reference_is_unregistered() -> None:
    bus = InProcessBus()
    sub = await bus.subscribe("a")
    keep = await bus.subscribe("a")
    del sub
    gc.collect()
    assert bus.subscriber_count == 1
    await bus.publish("a", b"x")
    assert (await next_change(keep)).data == b"x"


async def test_closed_bus_refuses_publish_and_subscribe() -> None:
    bus = InProcessBus()
    await bus.close()
    await bus.close()  # idempotent
    assert bus.closed
    with pytest.raises(BusClosedError, match="closed"):
        await bus.publish("a", b"x")
    with pytest.raises(BusError):
        await bus.subscribe("a")


async def test_close_ends_a_waiting_consumer() -> None:
    bus = InProcessBus()
    sub = await bus.subscribe("a")
    task = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)  # the task runs up to its wait
    await bus.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(task, 5)


async def test_invalid_topics_and_data_are_refused() -> None:
    bus = InProcessBus()
    with pytest.raises(ValueError, match="wildcard"):
        await bus.publish("a.*", b"x")
    with pytest.raises(ValueError, match="empty token"):
        await bus.publish("a..b", b"x")
    with pytest.raises(ValueError, match="last token"):
        await bus.subscribe("a.>.b")
    with pytest.raises(TypeError, match="bytes"):
        await bus.publish("a", "text")  # type: ignore[arg-type]
    assert bus.subscriber_count == 0


async def test_one_waiter_per_subscription() -> None:
    bus = InProcessBus()
    sub = await bus.subscribe("a")
    first = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)  # the task runs up to its wait
    with pytest.raises(RuntimeError, match="already waiting"):
        await asyncio.wait_for(anext(sub), 5)
    await bus.publish("a", b"x")
    assert (await asyncio.wait_for(first, 5)).data == b"x"
    await no_change(sub, within=0.05)


def test_topic_helpers() -> None:
    assert ttp_rule_state("R0015") == "ttp.rule.state.R0015"
    assert ttp_rule_reloaded("R_1") == "ttp.rule.reloaded.R_1"
    assert ttp_rule_state("x" * 64) == "ttp.rule.state." + "x" * 64


@pytest.mark.parametrize(
    "rule_id", ["R1.*", "R1 >", "a.b", "", "x" * 65, "R1>", "*", ">", "R1\n", "R1\r\nPUB"]
)
def test_topic_helpers_reject_hostile_rule_ids(rule_id: str) -> None:
    with pytest.raises(ValueError, match="rule id"):
        ttp_rule_state(rule_id)
    with pytest.raises(ValueError, match="rule id"):
        ttp_rule_reloaded(rule_id)
