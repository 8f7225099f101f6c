"""Expiry by timer: a state whose `expires_at` passes is reverted without anyone reading it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from decnet.ttp.constants import EXPIRY_RETRY_INITIAL, EXPIRY_RETRY_MAX
from decnet.ttp.errors import StoreError
from decnet.ttp.loops import Backoff, Outage, cancel_and_wait
from decnet.vocabulary import Clock, utcnow

log = logging.getLogger(__name__)

ExpireCallback = Callable[[str, datetime], Awaitable[None]]

#: Longest single sleep; long TTLs re-arm, so a wall-clock change is noticed.
_MAX_SLEEP = 3600.0


class ExpiryScheduler:
    """One timer per rule with an expiring state; `on_expire(rule_id, expires_at)` reverts it.

    The callback receives the `expires_at` it was armed for, so a store can revert
    only if the state was not replaced in the meantime. A revert that fails (the
    database is away) is retried with a backoff from `retry_initial` to `retry_max`
    seconds; it is logged once per rule per outage, each further failure at DEBUG, and
    the recovery once. `clock` is the wall clock `expires_at` is compared with.
    """

    def __init__(self, on_expire: ExpireCallback, *, clock: Clock = utcnow,
                 retry_initial: float = EXPIRY_RETRY_INITIAL,
                 retry_max: float = EXPIRY_RETRY_MAX) -> None:
        self._on_expire = on_expire
        self.clock = clock
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._timers: dict[str, tuple[datetime, asyncio.TimerHandle]] = {}
        self._running: set[asyncio.Task[None]] = set()
        #: rule_id -> its failed revert attempts (a backoff and an outage each).
        self._failures: dict[str, tuple[Backoff, Outage]] = {}

    def schedule(self, rule_id: str, expires_at: datetime | None) -> None:
        """Arm (or re-arm, or with None disarm) the timer of `rule_id`."""
        previous = self._timers.pop(rule_id, None)
        if previous is not None:
            previous[1].cancel()
        if expires_at is None:
            self._failures.pop(rule_id, None)
            return
        delay = min(max((expires_at - self.clock()).total_seconds(), 0.0), _MAX_SLEEP)
        self._arm(rule_id, expires_at, delay)

    def _arm(self, rule_id: str, expires_at: datetime, delay: float) -> None:
        handle = asyncio.get_running_loop().call_later(delay, self._fire, rule_id, expires_at)
        self._timers[rule_id] = (expires_at, handle)

    def armed(self) -> dict[str, datetime]:
        return {rule_id: when for rule_id, (when, _) in self._timers.items()}

    def _fire(self, rule_id: str, expires_at: datetime) -> None:
        self._timers.pop(rule_id, None)
        if expires_at > self.clock():
            self.schedule(rule_id, expires_at)
            return
        task = asyncio.get_running_loop().create_task(self._run(rule_id, expires_at))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, rule_id: str, expires_at: datetime) -> None:
        try:
            await self._on_expire(rule_id, expires_at)
        except Exception as exc:
            failures = self._failures.get(rule_id)
            if failures is None:
                failures = self._failures[rule_id] = (
                    Backoff(self.retry_initial, self.retry_max),
                    Outage(log, f"reverting the expired state of {rule_id}"))
            backoff, outage = failures
            # A store failure (the database is away) is expected: its reason is enough.
            # Anything else is a bug: keep the traceback.
            outage.failed(exc, f"retrying with a backoff up to {self.retry_max:.0f} s",
                          traceback=not isinstance(exc, StoreError))
            if rule_id not in self._timers:
                self._arm(rule_id, expires_at, backoff.failed())
        else:
            failures = self._failures.pop(rule_id, None)
            if failures is not None:
                failures[1].recovered()

    async def close(self) -> None:
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._failures.clear()
        await cancel_and_wait(*self._running, logger=log)
