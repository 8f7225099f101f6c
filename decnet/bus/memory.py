"""`InProcessBus`: an asyncio bus inside one process, one bounded queue per subscription.

Publishing never blocks and never waits for a subscriber: a message that does not fit
in a subscriber's queue is dropped for that subscriber only, counted in `dropped`
(on the subscription and on the bus) and logged once per burst of drops.

A subscription unsubscribes on `aclose()`, and also when it is garbage collected, so a
consumer that leaves `async for` with `break` stops receiving (and buffering) at once
in CPython. Use the bus from the thread running its event loop.
"""

from __future__ import annotations

import itertools
import logging
import weakref

from decnet.bus.base import Bus, BusMessage, BusSubscription
from decnet.bus.errors import BusClosedError
from decnet.bus.matching import match_tokens, pattern_tokens, topic_tokens
from decnet.inbox import Inbox

__all__ = ["DEFAULT_MAX_PENDING", "InProcessBus", "InProcessSubscription"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000


class _Channel:
    """The delivery state shared by the bus (its registry) and one subscription.

    It never references the subscription object, so the registry cannot keep an
    abandoned subscription alive.
    """

    __slots__ = ("bursting", "dropped", "inbox", "pattern", "tokens")

    def __init__(self, pattern: str, tokens: tuple[str, ...], max_pending: int) -> None:
        self.pattern = pattern
        self.tokens = tokens
        self.inbox: Inbox[BusMessage] = Inbox(max_pending)
        self.dropped = 0
        self.bursting = 0  # drops in the current burst; 0 when not bursting

    def offer(self, message: BusMessage) -> bool:
        """Enqueue without blocking; False (and counted) when the queue is full."""
        if self.inbox.full:
            self.dropped += 1
            if not self.bursting:
                logger.warning(
                    "bus subscriber on %r is full (%d pending): dropping messages",
                    self.pattern,
                    self.inbox.bound,
                )
            self.bursting += 1
            return False
        if self.bursting:
            logger.warning(
                "bus subscriber on %r caught up after dropping %d messages",
                self.pattern,
                self.bursting,
            )
            self.bursting = 0
        self.inbox.put(message)
        return True


def _unregister(registry: dict[int, _Channel], key: int) -> None:
    channel = registry.pop(key, None)
    if channel is not None:
        channel.inbox.close(discard=True)


class InProcessSubscription(BusSubscription):
    """Messages matching one pattern, in publish order. Close with `aclose()`."""

    def __init__(self, channel: _Channel, registry: dict[int, _Channel], key: int) -> None:
        self._channel = channel
        self._finalizer = weakref.finalize(self, _unregister, registry, key)

    @property
    def pattern(self) -> str:
        return self._channel.pattern

    @property
    def dropped(self) -> int:
        """Messages this subscription lost because its queue was full."""
        return self._channel.dropped

    @property
    def pending(self) -> int:
        """Messages queued and not yet taken."""
        return len(self._channel.inbox)

    @property
    def closed(self) -> bool:
        return self._channel.inbox.closed

    def __aiter__(self) -> InProcessSubscription:
        return self

    async def __anext__(self) -> BusMessage:
        return await self._channel.inbox.get()

    async def aclose(self) -> None:
        """Unsubscribe and discard what is still queued. Idempotent."""
        self._finalizer()


class InProcessBus(Bus):
    """Asyncio bus for one process. `max_pending` bounds each subscription's queue."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.max_pending = max_pending
        self._registry: dict[int, _Channel] = {}
        self._keys = itertools.count()
        self._closed = False
        self._dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions (closed and garbage-collected ones are gone)."""
        return len(self._registry)

    @property
    def dropped(self) -> int:
        """Messages dropped, summed over every subscriber ever, because a queue was full."""
        return self._dropped

    async def publish(self, topic: str, data: bytes) -> None:
        """Deliver to every matching subscriber now; never blocks, drops when full."""
        tokens = topic_tokens(topic)
        if not isinstance(data, bytes):
            raise TypeError(f"bus data must be bytes, not {type(data).__name__}")
        if self._closed:
            raise BusClosedError(f"cannot publish on {topic!r}: the bus is closed")
        message = BusMessage(topic, data)
        for channel in list(self._registry.values()):
            if match_tokens(channel.tokens, tokens) and not channel.offer(message):
                self._dropped += 1

    async def subscribe(self, pattern: str) -> InProcessSubscription:
        """Registered when this returns; iterate for messages, `aclose()` to stop."""
        tokens = pattern_tokens(pattern)
        if self._closed:
            raise BusClosedError(f"cannot subscribe to {pattern!r}: the bus is closed")
        key = next(self._keys)
        channel = _Channel(pattern, tokens, self.max_pending)
        self._registry[key] = channel
        return InProcessSubscription(channel, self._registry, key)

    async def close(self) -> None:
        """Stop taking messages. Subscribers get what is already queued, then stop."""
        if self._closed:
            return
        self._closed = True
        channels = list(self._registry.values())
        self._registry.clear()
        for channel in channels:
            channel.inbox.close()
