"""Subscriber fan-out: one bounded queue per subscriber, shared by every store."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator

from decnet.ttp.constants import SUBSCRIBER_QUEUE_BOUND
from decnet.vocabulary import RESYNC, RuleChange

log = logging.getLogger(__name__)

_RESYNC_CHANGE = RuleChange(RESYNC, "*", None)


class _Inbox:
    """Pending changes of one subscriber; past the bound they collapse into one resync."""

    __slots__ = ("bound", "changes", "closed", "lagged", "waiter")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.changes: deque[RuleChange] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.lagged = 0

    def push(self, change: RuleChange) -> None:
        if len(self.changes) >= self.bound:
            self.changes.clear()
            self.changes.append(_RESYNC_CHANGE)
            self.lagged += 1
        else:
            self.changes.append(change)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Subscription(AsyncIterator[RuleChange]):
    """Async iterator over one subscriber's changes; `aclose()` (or GC) unsubscribes."""

    def __init__(self, fanout: ChangeFanout, inbox: _Inbox) -> None:
        self._fanout = fanout
        self._inbox = inbox
        self._finalizer = weakref.finalize(self, fanout._discard, inbox)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> RuleChange:
        inbox = self._inbox
        while not inbox.changes:
            if inbox.closed:
                raise StopAsyncIteration
            inbox.waiter = asyncio.get_running_loop().create_future()
            try:
                await inbox.waiter
            finally:
                inbox.waiter = None
        return inbox.changes.popleft()

    def pending(self) -> int:
        return len(self._inbox.changes)

    async def aclose(self) -> None:
        self._inbox.changes.clear()
        self._inbox.close()
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
        self._inboxes: set[_Inbox] = set()

    def subscribe(self) -> Subscription:
        inbox = _Inbox(self._bound)
        self._inboxes.add(inbox)
        return Subscription(self, inbox)

    def publish(self, change: RuleChange) -> None:
        for inbox in tuple(self._inboxes):
            before = inbox.lagged
            inbox.push(change)
            if inbox.lagged != before:
                log.warning("subscriber lagged past %d changes; told to resync", self._bound)

    def close(self) -> None:
        for inbox in tuple(self._inboxes):
            inbox.close()
        self._inboxes.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._inboxes)

    def _discard(self, inbox: _Inbox) -> None:
        self._inboxes.discard(inbox)
