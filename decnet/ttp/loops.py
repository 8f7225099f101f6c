"""What every background loop of this package shares: how long to wait before trying
again (`Backoff`), how a run of failures is logged (`Outage`), how a task is stopped
(`cancel_and_wait`, `raise_if_cancelled`). Imports nothing of the project."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any


class Backoff:
    """Delays between attempts: `initial` doubled after each failure, at most `cap`.

    With `jitter` (a fraction, default 0.1) each delay is shortened by up to that
    fraction at random, so processes that failed together do not retry in lockstep.
    `reset()` after a success.
    """

    def __init__(self, initial: float, cap: float, *, jitter: float = 0.1,
                 rand: Callable[[], float] = random.random) -> None:
        if initial <= 0 or cap < initial:
            raise ValueError(f"need 0 < initial <= cap, got {initial} and {cap}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.initial = initial
        self.cap = cap
        self.jitter = jitter
        self._rand = rand
        #: Failures in a row since the last `reset()`.
        self.failures = 0

    def peek(self, failures: int | None = None) -> float:
        """The delay after `failures` failures in a row (default: the current run),
        without jitter."""
        count = self.failures if failures is None else failures
        return float(min(self.cap, self.initial * 2 ** min(max(count - 1, 0), 60)))

    def failed(self) -> float:
        """Count a failure; seconds to wait before the next attempt."""
        self.failures += 1
        return self.peek() * (1.0 - self.jitter * self._rand())

    def reset(self) -> None:
        self.failures = 0


class Outage:
    """A run of failures of one activity, logged as one outage.

    The first failure at WARNING (with its consequence), the next ones at DEBUG (a
    retry loop would otherwise log once per attempt), and the first success after them
    once, at WARNING, with the count.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        #: Failures in the current run; 0 while things work.
        self.failures = 0

    def failed(self, exc: BaseException, consequence: str, *,
               traceback: bool = False) -> None:
        """Record a failure; `traceback` logs the first one with its stack (a bug)."""
        self.failures += 1
        if self.failures == 1:
            self.log.warning("%s failed (%s: %s); %s (further failures are logged at DEBUG)",
                             self.what, type(exc).__name__, exc, consequence,
                             exc_info=exc if traceback else None)
        else:
            self.log.debug("%s failed again (%d in a row): %s: %s", self.what,
                           self.failures, type(exc).__name__, exc)

    def recovered(self, how: str = "") -> bool:
        """Record a success; True (and logged) when it ends an outage."""
        if not self.failures:
            return False
        self.log.warning("%s works again after %d failure(s)%s", self.what, self.failures,
                         how)
        self.failures = 0
        return True


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None,
                          logger: logging.Logger | None = None) -> None:
    """Cancel every task given (None and finished ones are skipped) and wait for each.

    A task that ends with an error instead of its cancellation has it logged (at
    WARNING, to `logger` or this module's), never raised: stopping must finish.
    """
    pending = [task for task in tasks if task is not None and not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)  # raises only if the caller is cancelled meanwhile
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            (logger or _log).warning("task %s ended with %r while stopping", _name(task),
                                     task.exception())


def raise_if_cancelled() -> None:
    """Raise `CancelledError` when the running task was asked to stop but carries on.

    On Python 3.11 `asyncio.wait_for` returns a result that arrived together with the
    cancellation instead of raising it; nats-py waits for every request that way (a
    JetStream publish and its acknowledgement, `stream_info`, ...). A loop calls this
    after such awaits so that one cancel stops it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


_log = logging.getLogger(__name__)
