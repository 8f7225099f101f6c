"""Subscriber fan-out: bounded, never blocking, dropped with its subscriber."""

from __future__ import annotations

import gc

import pytest

from decnet.ttp.store.base import RESYNC, STATE, RuleChange, RuleState
from decnet.ttp.store.fanout import ChangeFanout
from tests.waiting import next_change


def change(n: int) -> RuleChange:
    return RuleChange(STATE, f"R{n:04d}", RuleState())


async def test_every_subscriber_gets_every_change_in_order() -> None:
    fanout = ChangeFanout()
    first, second = fanout.subscribe(), fanout.subscribe()
    for n in range(5):
        fanout.publish(change(n))
    for sub in (first, second):
        assert [(await next_change(sub)).rule_id for _ in range(5)] == [
            f"R{n:04d}" for n in range(5)]


async def test_a_stalled_subscriber_is_told_to_resync_not_grown() -> None:
    fanout = ChangeFanout(bound=10)
    stalled = fanout.subscribe()
    for n in range(1000):
        fanout.publish(change(n))
    assert stalled.pending() <= 10
    backlog = [await next_change(stalled) for _ in range(stalled.pending())]
    assert backlog[0].change_kind == RESYNC
    tail = [c.rule_id for c in backlog[1:]]
    assert tail == [f"R{n:04d}" for n in range(1000 - len(tail), 1000)]


async def test_resync_then_later_changes_are_kept() -> None:
    fanout = ChangeFanout(bound=3)
    sub = fanout.subscribe()
    for n in range(4):
        fanout.publish(change(n))
    fanout.publish(change(99))
    kinds = [(await next_change(sub)) for _ in range(sub.pending())]
    assert kinds[0].change_kind == RESYNC
    assert kinds[-1].rule_id == "R0099"


async def test_aclose_ends_iteration_and_unsubscribes() -> None:
    fanout = ChangeFanout()
    sub = fanout.subscribe()
    assert fanout.subscriber_count == 1
    await sub.aclose()
    assert fanout.subscriber_count == 0
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


async def test_an_abandoned_subscription_is_collected() -> None:
    fanout = ChangeFanout()
    fanout.publish(change(0))

    async def break_early() -> None:
        sub = fanout.subscribe()
        fanout.publish(change(1))
        async for _ in sub:
            break

    await break_early()
    gc.collect()
    assert fanout.subscriber_count == 0
    for n in range(1000):
        fanout.publish(change(n))


async def test_close_wakes_waiting_readers() -> None:
    import asyncio

    fanout = ChangeFanout()
    sub = fanout.subscribe()
    reader = asyncio.ensure_future(anext(sub))
    await asyncio.sleep(0)
    fanout.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reader, 1)
