"""`BusOutbox`: messages for a bus, sent by one task so that the caller never waits.

Whoever announces a committed change (a store, the master's publisher) must not be
delayed by a slow or absent bus: messages wait in a queue of at most `bound` entries,
drained in order by one task; past the bound a message is dropped and counted, and a
failed publish is logged and counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from decnet.bus.base import Bus
from decnet.ttp.constants import BUS_OUTBOX_BOUND
from decnet.ttp.loops import cancel_and_wait

log = logging.getLogger(__name__)


class BusOutbox:
    """Sends (topic, data) to `bus` in order, without ever blocking `send`."""

    def __init__(self, bus: Bus, *, bound: int = BUS_OUTBOX_BOUND) -> None:
        self.bus = bus
        #: Messages that may wait unsent; past it a message is counted, not queued.
        self.bound = bound
        self.published = 0
        self.failures = 0
        self._queue: asyncio.Queue[tuple[str, bytes]] | None = None
        self._sender: asyncio.Task[None] | None = None

    def send(self, topic: str, data: bytes) -> None:
        """Queue one message (from a running event loop); dropped and counted when full."""
        if self._queue is None:
            self._queue = asyncio.Queue(self.bound)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._drain(self._queue))
        try:
            self._queue.put_nowait((topic, data))
        except asyncio.QueueFull:
            self.failures += 1
            log.warning("bus outbox full (%d); dropped announcement on %s", self.bound, topic)

    async def _drain(self, queue: asyncio.Queue[tuple[str, bytes]]) -> None:
        while True:
            topic, data = await queue.get()
            try:
                await self.bus.publish(topic, data)
                self.published += 1
            except Exception as exc:  # a bus outage must never reach the writer
                self.failures += 1
                log.warning("bus publish on %s failed: %s", topic, exc)
            finally:
                queue.task_done()

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued message was handed to the bus (tests, clean stops)."""
        if self._queue is not None and self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self) -> None:
        """Flush (briefly), then stop the sending task; the bus itself stays open."""
        await self.flush(timeout=2.0)
        sender, self._sender = self._sender, None
        await cancel_and_wait(sender, logger=log)
