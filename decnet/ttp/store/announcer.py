"""Change publication shared by every store: local subscribers first, then the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from decnet.bus.base import Bus
from decnet.bus.topics import ttp_rule_reloaded, ttp_rule_state
from decnet.ttp.constants import BUS_OUTBOX_BOUND
from decnet.ttp.loops import cancel_and_wait
from decnet.ttp.store.codec import change_to_bytes
from decnet.ttp.store.fanout import ChangeFanout, Subscription
from decnet.ttp.telemetry import get_tracer
from decnet.vocabulary import RESYNC, SCOPED, STATE, RuleChange

log = logging.getLogger(__name__)


def topic_for(change: RuleChange) -> str:
    if change.change_kind is STATE or change.change_kind is SCOPED:
        return ttp_rule_state(change.rule_id)
    return ttp_rule_reloaded(change.rule_id)


class ChangeAnnouncer:
    """Announces each `RuleChange` to local subscribers and, when wired, to a bus.

    Local delivery is synchronous and never blocks. Bus messages go through a bounded
    outbox drained by one task, so a slow or absent bus never delays a committed
    change; failures and overflow are logged and counted, never raised.
    """

    def __init__(self, bus: Bus | None = None, *, outbox_bound: int = BUS_OUTBOX_BOUND) -> None:
        #: Bus messages that may wait unsent; past it a change is counted, not queued.
        self.outbox_bound = outbox_bound
        self.fanout = ChangeFanout()
        self.bus = bus
        self.bus_published = 0
        self.bus_failures = 0
        self._outbox: asyncio.Queue[tuple[str, bytes]] | None = None
        self._sender: asyncio.Task[None] | None = None

    def subscribe(self) -> Subscription:
        return self.fanout.subscribe()

    def announce(self, change: RuleChange) -> None:
        if change.change_kind is RESYNC:
            self.fanout.publish(change)
            return
        with get_tracer().start_as_current_span(
            "ttp.rule.publish",
            attributes={"ttp.rule_id": change.rule_id, "ttp.change_kind": change.change_kind},
        ):
            self.fanout.publish(change)
            if self.bus is not None:
                self._enqueue(topic_for(change), change_to_bytes(change))

    def _enqueue(self, topic: str, data: bytes) -> None:
        if self._outbox is None:
            self._outbox = asyncio.Queue(self.outbox_bound)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._drain(self._outbox))
        try:
            self._outbox.put_nowait((topic, data))
        except asyncio.QueueFull:
            self.bus_failures += 1
            log.warning("bus outbox full (%d); dropped announcement on %s",
                        self.outbox_bound, topic)

    async def _drain(self, outbox: asyncio.Queue[tuple[str, bytes]]) -> None:
        assert self.bus is not None
        while True:
            topic, data = await outbox.get()
            try:
                await self.bus.publish(topic, data)
                self.bus_published += 1
            except Exception as exc:  # a bus outage must never reach the writer
                self.bus_failures += 1
                log.warning("bus publish on %s failed: %s", topic, exc)
            finally:
                outbox.task_done()

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until the bus outbox is empty (for tests and clean shutdown)."""
        if self._outbox is not None and self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), timeout)

    async def close(self) -> None:
        await self.flush(timeout=2.0)
        sender, self._sender = self._sender, None
        await cancel_and_wait(sender, logger=log)
        self.fanout.close()
