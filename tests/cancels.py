"""A cancel that Python 3.11's `asyncio.wait_for` swallows, on demand.

nats-py and asyncpg wait for their answers with `wait_for`; on Python 3.11 an answer that
lands in the same loop iteration as a cancel of the waiting task is returned and the
cancel is lost (the task only shows it in `cancelling()`). These helpers make that happen
at a chosen await, so a test can check that a loop stops all the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


async def arriving_with_a_cancel(value: T) -> T:
    """`value`, awaited through `wait_for` while the running task is cancelled in the same
    loop iteration (Python 3.11 returns it; later versions raise the cancel)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    answer: asyncio.Future[T] = loop.create_future()
    loop.call_soon(answer.set_result, value)
    loop.call_soon(task.cancel)
    return await asyncio.wait_for(answer, 5)


def connect_with_a_cancel(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> None:
    """`module.connect` (NATS) connects for real, but its first connection arrives
    together with a cancel of the task that connects."""
    real: Callable[..., Awaitable[Any]] = module.connect
    done = False

    async def connect(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        nc = await real(*args, **kwargs)
        if done:
            return nc
        done = True
        return await arriving_with_a_cancel(nc)

    monkeypatch.setattr(module, "connect", connect)


async def stops(task: asyncio.Task[Any], timeout: float = 5.0) -> bool:
    """Whether `task` ends with its cancellation within `timeout` seconds (it is cancelled
    for good after that, so that the test can clean up)."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except asyncio.CancelledError:
        return task.cancelled()
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    return False
