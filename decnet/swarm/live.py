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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from decnet.swarm.http.hits import TagHits
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.loops import Backoff, Outage
from decnet.ttp.store.base import RuleStore, Subscription, SyncStats

if TYPE_CHECKING:
    from decnet.ttp.store.database.feed import ChangeFeed

log = logging.getLogger(__name__)

#: (first, longest) pause between attempts at a `load_compiled` when the database is away.
RELOAD_BACKOFF: Final = (0.05, 1.0)


class LiveRules:
    """Follows `store` into `engine`: a full load, then one change at a time.

    `ready` turns true once the first full load has been applied. `applied_at`
    maps each live rule to the wall-clock time its latest change was applied;
    `revision` is the store's revision this view is known to include (only
    advanced when every change announced so far has been applied).
    """

    def __init__(self, store: RuleStore, engine: RuleEngine | None = None, *,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 reload_backoff: tuple[float, float] = RELOAD_BACKOFF) -> None:
        self.store = store
        self.engine = engine or RuleEngine()
        self.clock = clock
        self.monotonic = monotonic
        self.reload_backoff = reload_backoff
        self.ready = False
        self.applied_at: dict[str, float] = {}
        self._noted_revision: int | None = None
        self._changes: Subscription | None = None
        self._reloading = False
        self.full_loads = 0
        self.load_errors = 0
        self.loaded_at: float | None = None
        self._ready_event = asyncio.Event()
        self._no_sync = SyncStats()
        #: what the worker's evaluation tagged (reported with the fleet report)
        self.hits = TagHits()

    @property
    def sync(self) -> SyncStats:
        """How the store follows its database (all zero for one that does not)."""
        return self.store.sync_stats or self._no_sync

    @property
    def feed(self) -> ChangeFeed | None:
        """The NATS change feed the store's tail follows, if any."""
        feed: ChangeFeed | None = getattr(getattr(self.store, "tail", None), "feed", None)
        return feed

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
            await changes.aclose()

    @property
    def revision(self) -> int | None:
        """The store revision the engine includes.

        Between two steps of the follower (which is when anybody else runs), an empty
        inbox means every change the tail has announced is applied, so the tail's
        watermark is included; otherwise, the last revision noted when it was empty.
        """
        changes = self._changes
        if self.ready and not self._reloading and changes is not None and \
                changes.pending() == 0:
            watermark = self.sync.watermark
            if watermark is not None:
                self._noted_revision = watermark
        return self._noted_revision

    async def _follow(self, changes: Subscription) -> None:
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
        backoff = Backoff(*self.reload_backoff)
        outage = Outage(log, "loading the rules")
        while True:
            # Read the revision first: the load then includes at least that much.
            revision = self.sync.watermark
            try:
                rules = await self.store.load_compiled()
            except Exception as exc:  # the database may be away at start: retry
                self.load_errors += 1
                outage.failed(exc, "retrying")
                await asyncio.sleep(backoff.failed())
                continue
            outage.recovered()
            break
        self.engine.replace_all(rules)
        now = self.clock()
        self.applied_at = {rule.rule_id: now for rule in rules}
        self.full_loads += 1
        self.loaded_at = now
        if revision is not None:
            self._noted_revision = revision
        self.ready = True
        self._ready_event.set()

    def last_sync_age(self) -> float | None:
        """Seconds since the store last completed a read of the database, if it says."""
        at = self.sync.last_sync
        return None if at is None else max(0.0, self.monotonic() - at)

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
            "last_sync_age_seconds": self.last_sync_age(),
            "poll_errors": self.sync.poll_errors,
            "polls": self.sync.polls,
            "notifications": self.sync.notifications,
            "resyncs": self.sync.resyncs,
            "database_replacements": self.sync.database_replacements,
            "database_problem": self.sync.database_problem,
            "db_statements": self.store.statements_issued,
            "pushed": self.sync.pushed,
            "push_gaps": self.sync.push_gaps,
            "nats": None if self.feed is None else self.feed.healthy,
        }
