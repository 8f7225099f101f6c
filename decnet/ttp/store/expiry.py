"""Expiry by timer: a state whose `expires_at` passes is reverted without anyone reading it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from decnet.ttp.constants import EXPIRY_RETRY_INITIAL, EXPIRY_RETRY_MAX
from decnet.ttp.errors import StoreError
from decnet.ttp.store.base import utcnow

log = logging.getLogger(__name__)

ExpireCallback = Callable[[str, datetime], Awaitable[None]]

#: Longest single sleep; long TTLs re-arm, so a wall-clock change is noticed.
_MAX_SLEEP = 3600.0


def retry_delay(failures: int) -> float:
    """Seconds before the next revert attempt after `failures` failures in a row:
    `EXPIRY_RETRY_INITIAL` doubled per failure, capped at `EXPIRY_RETRY_MAX` (1 s → 30 s)."""
    return float(min(EXPIRY_RETRY_MAX, EXPIRY_RETRY_INITIAL * 2 ** min(max(failures - 1, 0), 30)))


class ExpiryScheduler:
    """One timer per rule with an expiring state; `on_expire(rule_id, expires_at)` reverts it.

    The callback receives the `expires_at` it was armed for, so a store can revert
    only if the state was not replaced in the meantime. A revert that fails (the
    database is away) is retried with a backoff (`retry_delay`); it is logged once per
    rule per outage, each further failure at DEBUG, and the recovery once.
    """

    def __init__(self, on_expire: ExpireCallback) -> None:
        self._on_expire = on_expire
        self._timers: dict[str, tuple[datetime, asyncio.TimerHandle]] = {}
        self._running: set[asyncio.Task[None]] = set()
        #: rule_id -> failed revert attempts in a row.
        self._failures: dict[str, int] = {}

    def schedule(self, rule_id: str, expires_at: datetime | None) -> None:
        """Arm (or re-arm, or with None disarm) the timer of `rule_id`."""
        previous = self._timers.pop(rule_id, None)
        if previous is not None:
            previous[1].cancel()
        if expires_at is None:
            self._failures.pop(rule_id, None)
            return
        loop = asyncio.get_running_loop()
        delay = min(max((expires_at - utcnow()).total_seconds(), 0.0), _MAX_SLEEP)
        handle = loop.call_later(delay, self._fire, rule_id, expires_at)
        self._timers[rule_id] = (expires_at, handle)

    def armed(self) -> dict[str, datetime]:
        return {rule_id: when for rule_id, (when, _) in self._timers.items()}

    def _fire(self, rule_id: str, expires_at: datetime) -> None:
        self._timers.pop(rule_id, None)
        if expires_at > utcnow():
            self.schedule(rule_id, expires_at)
            return
        task = asyncio.get_running_loop().create_task(self._run(rule_id, expires_at))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, rule_id: str, expires_at: datetime) -> None:
        failed_before = self._failures.get(rule_id, 0)
        try:
            await self._on_expire(rule_id, expires_at)
        except Exception as exc:
            failures = self._failures[rule_id] = failed_before + 1
            delay = retry_delay(failures)
            if failures == 1:
                # A store failure (the database is away) is expected: its reason is
                # enough. Anything else is a bug: keep the traceback.
                log.warning("reverting the expired state of %s failed (%s: %s); retrying "
                            "with a backoff up to %.0f s, further failures logged at DEBUG",
                            rule_id, type(exc).__name__, exc, EXPIRY_RETRY_MAX,
                            exc_info=not isinstance(exc, StoreError))
            else:
                log.debug("reverting the expired state of %s failed again (%d in a row, "
                          "next try in %.1f s): %s: %s", rule_id, failures, delay,
                          type(exc).__name__, exc)
            if rule_id not in self._timers:
                handle = asyncio.get_running_loop().call_later(
                    delay, self._fire, rule_id, expires_at)
                self._timers[rule_id] = (expires_at, handle)
        else:
            self._failures.pop(rule_id, None)
            if failed_before:
                log.info("reverted the expired state of %s after %d failed attempt(s)",
                     rule_id, failed_before)

    async def close(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._failures.clear()
        for task in tuple(self._running):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
