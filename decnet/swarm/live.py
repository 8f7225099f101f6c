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
from decnet.ttp.store.base import RuleStore
from decnet.vocabulary import RuleChange

log = logging.getLogger(__name__)

#: Backoff between attempts at the first `load_compiled` when the database is away.
RELOAD_BACKOFF: Final = (0.05, 0.1, 0.2, 0.5, 1.0)


def store_stat(store: RuleStore, name: str, default: Any = None) -> Any:
    """A statistic of a tailing store (`DatabaseRuleStore.stats`: watermark, last_sync,
    poll_errors, polls, notifications, resyncs), else `default`."""
    stats = getattr(store, "stats", None)
    value = getattr(stats, name, None) if stats is not None else None
    return default if value is None else value


def store_statements(store: RuleStore) -> int | None:
    """SQL statements the store has issued, when it counts them."""
    value = getattr(getattr(store, "repo", None), "statements", None)
    return value if isinstance(value, int) else None


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
        self._noted_revision: int | None = None
        self._changes: AsyncIterator[RuleChange] | None = None
        self._reloading = False
        self.full_loads = 0
        self.load_errors = 0
        self.loaded_at: float | None = None
        self._ready_event = asyncio.Event()

    async def wait_ready(self) -> None:
        await self._ready_event.wait()

    async def run(self) -> None:
        """Load, then apply the store's changes until cancelled."""
        changes = self._changes = self.store.subscribe_changes()
        try:
            await self._reload()
            await self._follow(changes)
        finally:
            self._changes = None
            aclose = getattr(changes, "aclose", None)
            if aclose is not None:
                await aclose()

    @property
    def revision(self) -> int | None:
        """The store revision the engine includes.

        Between two steps of the follower (which is when anybody else runs), an empty
        inbox means every change the tail has announced is applied, so the tail's
        watermark is included; otherwise, the last revision noted when it was empty.
        """
        changes = self._changes
        pending = getattr(changes, "pending", None)
        if self.ready and not self._reloading and pending is not None and pending() == 0:
            watermark = store_stat(self.store, "watermark")
            if isinstance(watermark, int):
                self._noted_revision = watermark
        return self._noted_revision

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

    async def _reload(self) -> None:
        self._reloading = True
        try:
            await self._load()
        finally:
            self._reloading = False

    async def _load(self) -> None:
        attempt = 0
        while True:
            # Read the revision first: the load then includes at least that much.
            revision = store_stat(self.store, "watermark")
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
            self._noted_revision = revision
        self.ready = True
        self._ready_event.set()

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
            "poll_errors": int(store_stat(self.store, "poll_errors", 0)),
            "polls": int(store_stat(self.store, "polls", 0)),
            "notifications": int(store_stat(self.store, "notifications", 0)),
            "resyncs": int(store_stat(self.store, "resyncs", 0)),
            "database_replacements": int(store_stat(self.store, "database_replacements", 0)),
            "database_problem": store_stat(self.store, "database_problem"),
            "db_statements": store_statements(self.store),
        }


def last_sync_age(store: RuleStore) -> float | None:
    """Seconds since the store last completed a read of the database, if it says."""
    at = store_stat(store, "last_sync")
    if isinstance(at, int | float):
        return max(0.0, time.monotonic() - float(at))
    return None
