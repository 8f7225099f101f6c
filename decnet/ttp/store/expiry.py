"""Expiry by timer: a state whose `expires_at` passes is reverted without anyone reading it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from decnet.ttp.store.base import utcnow

log = logging.getLogger(__name__)

ExpireCallback = Callable[[str, datetime], Awaitable[None]]

#: Longest single sleep; long TTLs re-arm, so a wall-clock change is noticed.
_MAX_SLEEP = 3600.0


class ExpiryScheduler:
    """One timer per rule with an expiring state; `on_expire(rule_id, expires_at)` reverts it.

    The callback receives the `expires_at` it was armed for, so a store can revert
    only if the state was not replaced in the meantime.
    """

    def __init__(self, on_expire: ExpireCallback) -> None:
        self._on_expire = on_expire
        self._timers: dict[str, tuple[datetime, asyncio.TimerHandle]] = {}
        self._running: set[asyncio.Task[None]] = set()

    def schedule(self, rule_id: str, expires_at: datetime | None) -> None:
        """Arm (or re-arm, or with None disarm) the timer of `rule_id`."""
        previous = self._timers.pop(rule_id, None)
        if previous is not None:
            previous[1].cancel()
        if expires_at is None:
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
        try:
            await self._on_expire(rule_id, expires_at)
        except Exception:
            log.exception("reverting the expired state of %s failed; retrying in 1 s", rule_id)
            if rule_id not in self._timers:
                handle = asyncio.get_running_loop().call_later(
                    1.0, self._fire, rule_id, expires_at)
                self._timers[rule_id] = (expires_at, handle)

    async def close(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in tuple(self._running):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
