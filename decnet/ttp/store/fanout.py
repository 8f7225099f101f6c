"""Subscriber fan-out: one bounded queue per subscriber, shared by every store."""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator

from decnet.inbox import Inbox
from decnet.ttp.constants import SUBSCRIBER_QUEUE_BOUND
from decnet.vocabulary import RESYNC, RuleChange

log = logging.getLogger(__name__)

_RESYNC_CHANGE = RuleChange(RESYNC, "*", None)


class Subscription(AsyncIterator[RuleChange]):
    """Async iterator over one subscriber's changes; `aclose()` (or GC) unsubscribes."""

    def __init__(self, fanout: ChangeFanout, inbox: Inbox[RuleChange]) -> None:
        self._fanout = fanout
        self._inbox = inbox
        self._finalizer = weakref.finalize(self, fanout._discard, inbox)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> RuleChange:
        return await self._inbox.get()

    def pending(self) -> int:
        return len(self._inbox)

    async def aclose(self) -> None:
        self._inbox.close(discard=True)
        self._finalizer()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class ChangeFanout:
    """Delivers every change to every live subscriber without ever blocking the writer.

    A subscriber that stops reading holds at most `bound` changes; past that its
    backlog is replaced by one `resync` change telling it to call `load_compiled()`.
    A subscription dropped without `aclose()` is unregistered when it is collected.
    """

    def __init__(self, bound: int = SUBSCRIBER_QUEUE_BOUND) -> None:
        self._bound = bound
        self._inboxes: set[Inbox[RuleChange]] = set()

    def subscribe(self) -> Subscription:
        inbox: Inbox[RuleChange] = Inbox(self._bound)
        self._inboxes.add(inbox)
        return Subscription(self, inbox)

    def publish(self, change: RuleChange) -> None:
        for inbox in tuple(self._inboxes):
            if inbox.full:
                inbox.replace(_RESYNC_CHANGE)
                log.warning("subscriber lagged past %d changes; told to resync", self._bound)
            else:
                inbox.put(change)

    def close(self) -> None:
        for inbox in tuple(self._inboxes):
            inbox.close()
        self._inboxes.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._inboxes)

    def _discard(self, inbox: Inbox[RuleChange]) -> None:
        self._inboxes.discard(inbox)
