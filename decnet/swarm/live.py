"""`LiveRules`: a `RuleEngine` kept in step with a store, and what a worker reports about it.

The worker's HTTP API reads this object; it never touches the store itself. Every
change applied to the engine is timestamped (wall clock, `time.time()`) per rule so
that a benchmark on the same host can measure "saved on the master" to "applied on
this worker" from the worker's own record, not from when somebody happened to look.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.store.base import RuleChange, RuleStore

log = logging.getLogger(__name__)

#: Backoff between attempts at the first `load_compiled` when the database is away.
RELOAD_BACKOFF: Final = (0.05, 0.1, 0.2, 0.5, 1.0)


def store_stat(store: RuleStore, name: str, default: Any = None) -> Any:
    """An optional statistic a store may expose (revision, poll errors...), else `default`."""
    value = getattr(store, name, default)
    return value() if callable(value) else value


class LiveRules:
    """Follows `store` into `engine`: a full load, then one change at a time.

    `ready` turns true once the first full load has been applied. `applied_at`
    maps each live rule to the wall-clock time its latest change was applied;
    `revision` is the store's revision this view is known to include (only
    advanced when every change announced so far has been applied).
    """

    def __init__(self, store: RuleStore, engine: RuleEngine | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.engine = engine or RuleEngine()
        self.clock = clock
        self.ready = False
        self.applied_at: dict[str, float] = {}
        self.revision: int | None = None
        self.full_loads = 0
        self.load_errors = 0
        self.loaded_at: float | None = None
        self._ready_event = asyncio.Event()

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def run(self) -> None:
        """Load, then apply the store's changes until cancelled."""
        changes = self.store.subscribe_changes()
        try:
            await self._reload()
            await self._follow(changes)
        finally:
            aclose = getattr(changes, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _follow(self, changes: AsyncIterator[RuleChange]) -> None:
        async for change in changes:
            if not self.engine.apply(change):
                log.info("subscriber lagged or store asked for a resync: reloading")
                await self._reload()
                continue
            now = self.clock()
            if change.is_deletion:
                self.applied_at.pop(change.rule_id, None)
            else:
                self.applied_at[change.rule_id] = now
            pending = getattr(changes, "pending", None)
            if pending is None or pending() == 0:
                self._note_revision()

    async def _reload(self) -> None:
        attempt = 0
        while True:
            # Read the revision first: the load then includes at least that much.
            revision = store_stat(self.store, "revision")
            try:
                rules = await self.store.load_compiled()
            except Exception as exc:  # the database may be away at start: retry
                self.load_errors += 1
                delay = RELOAD_BACKOFF[min(attempt, len(RELOAD_BACKOFF) - 1)]
                attempt += 1
                log.warning("loading rules failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            break
        self.engine.replace_all(rules)
        now = self.clock()
        self.applied_at = {rule.rule_id: now for rule in rules}
        self.full_loads += 1
        self.loaded_at = now
        if isinstance(revision, int):
            self.revision = revision
        self.ready = True
        self._ready_event.set()

    def _note_revision(self) -> None:
        revision = store_stat(self.store, "revision")
        if isinstance(revision, int):
            self.revision = revision

    def status(self) -> dict[str, Any]:
        """What `GET /status` reports."""
        return {
            "ready": self.ready,
            "revision": self.revision,
            "rules_loaded": len(self.engine.rules),
            "changes_applied": self.engine.changes_applied,
            "full_loads": self.full_loads,
            "load_errors": self.load_errors,
            "events_evaluated": self.engine.events_evaluated,
            "tags_emitted": self.engine.tags_emitted,
            "last_sync_age_seconds": last_sync_age(self.store),
            "poll_errors": int(store_stat(self.store, "poll_errors", 0) or 0),
        }


def last_sync_age(store: RuleStore) -> float | None:
    """Seconds since the store last completed a read of the database, if it says."""
    at = store_stat(store, "last_sync_monotonic")
    if isinstance(at, int | float):
        return max(0.0, time.monotonic() - float(at))
    return None
