"""Stores announce on a wired bus: one message per change, and an outage never blocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from decnet.bus.base import Bus, BusMessage
from decnet.bus.memory import InProcessBus
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from tests.waiting import next_change, poll

RULE = """\
rule_id: {rule_id}
rule_version: 1
name: uname
applies_to: [command]
match: {{pattern: 'uname'}}
emits: [{{tactic: TA0007, technique_id: T1082, confidence: 0.5}}]
"""


class StalledBus(Bus):
    """A bus whose publish never returns, or always fails: an outage."""

    def __init__(self, *, fail: bool) -> None:
        self.fail = fail
        self.calls = 0

    async def publish(self, topic: str, data: bytes) -> None:
        self.calls += 1
        if self.fail:
            raise ConnectionError("bus is down")
        await asyncio.Event().wait()

    async def subscribe(self, pattern: str) -> AsyncIterator[BusMessage]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_one_message_per_change_on_the_rule_topics(tmp_path: Path) -> None:
    bus = InProcessBus()
    messages = await bus.subscribe("ttp.rule.>")
    async with FilesystemRuleStore(tmp_path, bus=bus) as store:
        (tmp_path / "R0001.yaml").write_text(RULE.format(rule_id="R0001"))
        await poll(lambda: store.reloads_applied == 1, message="R0001")
        await store.set_state("R0001", RuleState(StateName.DISABLED, reason="x"), "alice")
        (tmp_path / "R0001.yaml").unlink()
        got = [await next_change(messages) for _ in range(3)]
    assert [m.topic for m in got] == ["ttp.rule.reloaded.R0001", "ttp.rule.state.R0001",
                                      "ttp.rule.reloaded.R0001"]
    bodies = [orjson.loads(m.data) for m in got]
    assert [b["change_kind"] for b in bodies] == ["definition", "state", "deleted"]
    assert bodies[1]["state"]["state"] == "disabled" and bodies[1]["state"]["set_by"] == "alice"
    assert bodies[0]["rule_version"] == 1
    await bus.close()


@pytest.mark.parametrize("fail", [True, False], ids=["failing", "hanging"])
async def test_a_bus_outage_never_blocks_or_fails_a_state_change(tmp_path: Path,
                                                                 fail: bool) -> None:
    bus = StalledBus(fail=fail)
    async with FilesystemRuleStore(tmp_path, bus=bus) as store:
        changes = store.subscribe_changes()
        for n in range(5):
            await asyncio.wait_for(
                store.set_state("R0001", RuleState(StateName.DISABLED, reason=str(n)), "a"), 2)
            assert (await next_change(changes)).rule_id == "R0001"
        assert (await store.get_state("R0001")).reason == "4"
        announcer = store.announcer
        await poll(lambda: bus.calls >= 1, message="publish attempted")
        if fail:
            await poll(lambda: announcer.bus_failures == 5, message="failures counted")


async def test_a_full_bus_outbox_is_counted_and_local_subscribers_lose_nothing(
    tmp_path: Path
) -> None:
    bus = StalledBus(fail=False)
    async with FilesystemRuleStore(tmp_path, bus=bus) as store:
        store.announcer.outbox_bound = 5  # before the first message creates the outbox
        changes = store.subscribe_changes()
        for n in range(20):
            await asyncio.wait_for(
                store.set_state("R0001", RuleState(StateName.DISABLED, reason=str(n)), "a"), 2)
        reasons = []
        for _ in range(20):
            change = await next_change(changes)
            assert isinstance(change.new_value, RuleState)
            reasons.append(change.new_value.reason)
        assert reasons == [str(n) for n in range(20)]
        # five wait in the outbox and at most one is stuck in the bus: the rest overflowed
        await poll(lambda: store.announcer.bus_failures >= 14, message="overflow counted")
        assert store.announcer.bus_failures <= 15
