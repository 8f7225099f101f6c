"""Waiting on conditions with deadlines: the only way tests wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def poll(
    condition: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "condition",
) -> T:
    """Call `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(interval)


async def next_change(changes: AsyncIterator[T], timeout: float = 5.0) -> T:
    """The next item of `changes`, or fail after `timeout` seconds."""
    try:
        return await asyncio.wait_for(anext(changes), timeout)
    except TimeoutError:
        raise AssertionError(f"no change arrived within {timeout}s") from None


async def no_change(changes: AsyncIterator[T], within: float = 0.3) -> None:
    """Assert that nothing arrives on `changes` for `within` seconds."""
    try:
        item = await asyncio.wait_for(anext(changes), within)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected change: {item!r}")
