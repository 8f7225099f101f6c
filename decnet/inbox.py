"""`Inbox`: a bounded queue with one waiting reader, filled without ever blocking.

What a subscriber holds, on the bus and in a store's change fan-out alike: the writer
appends (after checking `full` and applying its own policy: drop, or collapse the
backlog), the one reader awaits `get()`. Use it from the thread running its event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    """Items for one reader, at most `bound` of them waiting."""

    __slots__ = ("_waiter", "bound", "closed", "items")

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError(f"an inbox holds at least one item, not {bound}")
        self.bound = bound
        self.items: deque[T] = deque()
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.bound

    def put(self, item: T) -> None:
        """Append `item` (the caller has checked `full`) and wake the reader."""
        self.items.append(item)
        self._wake()

    def replace(self, item: T) -> None:
        """Drop the backlog for `item` alone (a reader too far behind is told to start over)."""
        self.items.clear()
        self.put(item)

    def close(self, *, discard: bool = False) -> None:
        """No more items; the reader gets what is queued (nothing with `discard`), then stops."""
        self.closed = True
        if discard:
            self.items.clear()
        self._wake()

    async def get(self) -> T:
        """The next item; `StopAsyncIteration` once closed and empty."""
        while not self.items:
            if self.closed:
                raise StopAsyncIteration
            if self._waiter is not None and not self._waiter.done():
                raise RuntimeError("another task is already waiting on this inbox")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.items.popleft()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
