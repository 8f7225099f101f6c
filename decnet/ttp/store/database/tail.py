"""`Tail`: a worker's store follows the changes other processes commit to the database.

It owns the watermark (the revision applied up to), the PostgreSQL LISTEN connection
and the counters `/metrics` reads (`TailStats`). Each change-log entry past the
watermark is handed to the store's view (`DatabaseRuleStore.apply_entry`), which
announces what it changes for this process's subscribers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from decnet.ttp.constants import (
    CHANGE_LOG_BATCH,
    NATS_CONNECT_TIMEOUT,
    TAIL_POLL_INTERVAL,
    TAIL_QUERY_TIMEOUT,
)
from decnet.ttp.errors import DatabaseFileChanged
from decnet.ttp.loops import Backoff, Outage, cancel_and_wait, raise_if_cancelled
from decnet.ttp.store.base import SyncStats
from decnet.ttp.store.database.listen import listen_for_commits, notified_revision
from decnet.ttp.store.sql.rows import LogEntry

if TYPE_CHECKING:
    from decnet.ttp.store.database.feed import ChangeFeed
    from decnet.ttp.store.database.store import DatabaseRuleStore

log = logging.getLogger(__name__)

#: First pause after a failed poll (doubled per failure, at most the poll interval).
POLL_RETRY_INITIAL = 0.05
#: The safety-net poll under NATS is due within ± this share of its interval.
SAFETY_POLL_JITTER = 0.5
#: Seconds a tail started with a view and a NATS feed leaves the feed to connect (and
#: replay what was missed from the stream) before its first poll: the deadline of a
#: NATS connection.
FEED_CONNECT_PATIENCE = 2 * NATS_CONNECT_TIMEOUT


#: The counters of a tail: the contract's `SyncStats`.
TailStats = SyncStats


@dataclass(slots=True)
class _Wakeup:
    """What wakes a tail between polls: notifications (PostgreSQL LISTEN)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    #: The highest revision notified since the tail last looked (a hint: the poll
    #: stays the safety net); 0 when none.
    revision: int = 0
    #: A full poll is wanted (the listener (re)connected, or a payload was unreadable).
    catch_up: bool = False


class Tail:
    """Follows the database for `store`: polls on a cadence, and on PostgreSQL listens.

    `batch` is how many change-log entries one read takes while catching up;
    `query_timeout` bounds one poll (at least twice the poll interval); `monotonic` is
    the clock of `stats.last_sync`.
    """

    def __init__(self, store: DatabaseRuleStore, *, batch: int = CHANGE_LOG_BATCH,
                 query_timeout: float = TAIL_QUERY_TIMEOUT,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.repo = store.repo
        self.batch = batch
        self.query_timeout = query_timeout
        self.monotonic = monotonic
        self.stats = TailStats()
        #: Identity of the database the watermark belongs to (see `rows.Head`).
        self.identity: str | None = None
        #: The NATS change feed `run` follows, if any.
        self.feed: ChangeFeed | None = None
        #: Set once the store has a view (a watermark the feed can resume from).
        self.viewed = asyncio.Event()
        self._wakeup = _Wakeup()

    @property
    def watermark(self) -> int | None:
        return self.stats.watermark

    def follow_from(self, revision: int, identity: str) -> None:
        """The store's view now includes `revision` of the database `identity`."""
        self.stats.watermark = revision
        self.identity = identity
        self.viewed.set()

    def apply_pushed(self, identity: str, entry: LogEntry) -> bool:
        """Apply an entry that arrived through NATS, without touching the database.

        The entry right after the watermark is applied; one at or below it is a
        duplicate (ignored); one further on, or from another database, wakes the tail
        to read the database up to it (False: a gap). Nothing before the first view.
        """
        watermark = self.stats.watermark
        if watermark is None or entry.revision <= watermark:
            return True
        if identity != self.identity or entry.revision != watermark + 1:
            self.stats.push_gaps += 1
            if identity != self.identity:
                self._wakeup.catch_up = True
            else:
                self._wakeup.revision = max(self._wakeup.revision, entry.revision)
            self._wakeup.event.set()
            return False
        if self.store.apply_entry(entry):
            self.stats.changes_applied += 1
        self.stats.watermark = entry.revision
        self.stats.pushed += 1
        self.stats.last_sync = self.monotonic()
        return True

    def feed_changed(self, *, read_database: bool) -> None:
        """The feed connected or lost NATS: let the loop pick the cadence that fits, and
        poll the database now when the stream does not cover what was missed."""
        if read_database:
            self._wakeup.catch_up = True
        self._wakeup.event.set()

    def read_database(self, up_to: int | None) -> None:
        """Read the change log up to revision `up_to` (None: a full poll, which also
        checks the database's identity) at once: the feed says the stream did not
        deliver it."""
        if up_to is None:
            self._wakeup.catch_up = True
        else:
            self._wakeup.revision = max(self._wakeup.revision, up_to)
        self._wakeup.event.set()

    def reconsider(self) -> None:
        """Wake the loop to pick its cadence again (the feed's beacon came back)."""
        self._wakeup.event.set()

    async def run(self, poll_interval: float = TAIL_POLL_INTERVAL, *,
                  listen: bool = True, feed: ChangeFeed | None = None,
                  feed_poll_interval: float | None = None) -> None:
        """Announce every change other processes make, until cancelled.

        Starts from the view of the store's first `load_compiled` (or takes one now),
        so no old history is replayed. Polls run on a fixed cadence (each one due
        `poll_interval` after the previous one was due; slots missed while a poll ran
        long are skipped), and each issues one cheap query (the revision row); only when
        it moved are the change-log entries past the watermark read. A watermark older
        than the retained log announces a `resync`. Database errors are logged once per
        outage and counted (`stats.poll_errors`), retried with a backoff capped at
        `poll_interval`, and the last good rules stay. On PostgreSQL a LISTEN connection
        wakes the tail as soon as a write commits: the notified revision is a hint, read
        straight from the change log (one statement), and one not past the watermark
        does nothing (`listen=False`: poll only, e.g. behind a pooler in transaction
        mode, which cannot carry LISTEN).

        With a NATS `feed`, changes arrive pushed (`apply_pushed`, replayed from the
        stream after a reconnection) and LISTEN is not used. The database is read when
        the feed asks (`read_database`, `feed_changed`) and polled: never while the
        lease holder's head beacon vouches for the watermark, every `feed_poll_interval`
        (± `SAFETY_POLL_JITTER`) while the feed flows without beacons, every
        `poll_interval` while NATS is away. Starting with a view and a feed, the first
        poll waits for the feed to connect (`FEED_CONNECT_PATIENCE`; at once when it
        cannot): the feed resumes from the view, usually with no database read.
        """
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        wakeup = self._wakeup = _Wakeup()
        listener: asyncio.Task[None] | None = None
        feeder: asyncio.Task[None] | None = None
        self.feed = feed
        slow_interval = feed_poll_interval or poll_interval

        def cadence() -> float | None:
            """Seconds between polls now; None: no polls (the beacon vouches)."""
            if feed is None or not feed.healthy:
                return poll_interval
            return None if feed.watch.fresh() else slow_interval

        def first_delay(interval: float | None) -> float:
            if interval is None:
                return math.inf
            if feed is not None and interval == slow_interval:
                # a fleet that (re)connected at once must not poll at once
                return interval * random.uniform(1 - SAFETY_POLL_JITTER, 1 + SAFETY_POLL_JITTER)
            return interval

        if feed is not None:
            feeder = asyncio.get_running_loop().create_task(
                feed.run(self), name="decnet-ttp-feed")
        elif listen and self.repo.dialect == "postgresql":
            listener = asyncio.get_running_loop().create_task(
                self._listen(wakeup), name="decnet-ttp-listen")
        loop = asyncio.get_running_loop()
        current = cadence()
        # the first poll now (without a feed, or without a view yet); with a feed, once
        # it had the time to connect (it asks for a poll at once when it cannot)
        due = loop.time() if feed is None or self.watermark is None \
            else loop.time() + max(first_delay(current), FEED_CONNECT_PATIENCE)
        timed_out = feed is None or self.watermark is None
        retry: float | None = None  # when a failed read is tried again
        backoff = Backoff(POLL_RETRY_INITIAL, max(POLL_RETRY_INITIAL, poll_interval))
        outage = Outage(log, "polling the rule database")
        try:
            while True:
                # the wait below (and asyncpg's) may return a wake-up that came with the
                # cancel instead of raising it (Python 3.11's wait_for)
                raise_if_cancelled()
                catch_up, hint = wakeup.catch_up, wakeup.revision
                wakeup.catch_up, wakeup.revision = False, 0
                wakeup.event.clear()
                started = loop.time()
                now_cadence = cadence()
                if now_cadence != current:  # the feed or its beacon came or went
                    current = now_cadence
                    due, timed_out = started + first_delay(current), False
                slot = (current is not None and (timed_out or started >= due)) or \
                    (retry is not None and started >= retry)
                try:
                    async with asyncio.timeout(max(self.query_timeout, 2 * poll_interval)):
                        await self.repo.connect()
                        await self.store.ensure_view()
                        if slot or catch_up:
                            await self.poll_once()
                        elif self.watermark is not None and hint > self.watermark:
                            await self.follow_notification(hint)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.stats.poll_errors += 1
                    if isinstance(exc, DatabaseFileChanged):
                        if self.stats.database_problem is None:
                            log.error("%s; keeping the last good rules", exc)
                        self.stats.database_problem = str(exc)
                    outage.failed(exc, "keeping the last good rules")
                    retry = loop.time() + backoff.failed()
                else:
                    retry = None
                    self.stats.database_problem = None
                    backoff.reset()
                    if outage.recovered(f"; caught up to revision {self.watermark}"):
                        current = cadence()
                        due, slot = started + first_delay(current), False
                    if slot and current is not None:
                        # the next slot after this one (slots missed are skipped)
                        missed = max(0, math.floor((started - due) / current))
                        due += current * (missed + 1)
                        if current == slow_interval and feed is not None:
                            due += current * random.uniform(-SAFETY_POLL_JITTER,
                                                            SAFETY_POLL_JITTER)
                timed_out = False
                deadline = due
                if current is None and feed is not None:  # wake when the beacon goes stale
                    deadline = feed.watch.fresh_until() or loop.time()
                if retry is not None:
                    deadline = min(deadline, retry)
                try:
                    await asyncio.wait_for(wakeup.event.wait(),
                                           max(0.0, deadline - loop.time()))
                except TimeoutError:
                    timed_out = deadline == due and current is not None
        finally:
            await cancel_and_wait(listener, feeder, logger=log)

    async def poll_once(self) -> int:
        """One poll: read the revision and apply what moved; how many changes it applied."""
        await self.store.ensure_view()
        # the watermark before the read: entries pushed meanwhile (`apply_pushed`) may
        # take it past the head this read returns, which is no step back
        seen = self.stats.watermark
        current = await self.repo.head()
        head = current.revision
        self.stats.polls += 1
        applied = 0
        assert self.stats.watermark is not None and seen is not None
        if current.identity != self.identity:
            log.warning("the rule database was replaced (identity %s, was %s); reloading "
                        "everything from the new one", current.identity, self.identity)
            self.stats.database_replacements += 1
            await self.resync()
            head = self.stats.watermark
        elif head < seen:
            log.warning("rule database revision went back from %d to %d (restored or "
                        "recreated?); reloading everything", seen, head)
            await self.resync()
            head = self.stats.watermark
        applied, gap = await self._apply_up_to(head)
        if gap:
            log.warning("change log no longer reaches back to revision %d; reloading "
                        "everything", self.stats.watermark + 1)
            await self.resync()
        self.stats.last_sync = self.monotonic()
        return applied

    async def follow_notification(self, revision: int) -> int:
        """Apply the change log up to a notified `revision`, without reading the revision row.

        The notification is only a hint: one not past the watermark does nothing, and
        when the log does not continue the watermark (pruned, or not visible yet) the
        revision row decides, as a poll (`poll_once`) does.
        """
        await self.store.ensure_view()
        applied, gap = await self._apply_up_to(revision)
        if gap:
            return applied + await self.poll_once()
        self.stats.last_sync = self.monotonic()
        return applied

    async def _apply_up_to(self, head: int) -> tuple[int, bool]:
        """Apply the change-log entries past the watermark up to `head`, in batches: how
        many changed something, and whether the log stopped continuing the watermark (a
        gap: pruned, or not visible yet)."""
        applied = 0
        assert self.stats.watermark is not None
        while self.stats.watermark < head:
            watermark = self.stats.watermark
            entries = await self.repo.changes_since(watermark, head, self.batch)
            if (not entries or entries[0].revision != watermark + 1
                    or entries[0].database != self.identity):
                return applied, True  # another database: the poll's identity check decides
            for entry in entries:
                if self.store.apply_entry(entry):
                    applied += 1
                    self.stats.changes_applied += 1
            # max: entries pushed meanwhile (`apply_pushed`) may have gone further
            self.stats.watermark = max(self.stats.watermark, entries[-1].revision)
        return applied, False

    async def resync(self) -> None:
        """Take a whole new view of the database and tell subscribers to reload."""
        self.store.adopt(await self.repo.snapshot())
        self.stats.resyncs += 1
        self.store.announce_resync()

    async def _listen(self, wakeup: _Wakeup) -> None:
        """PostgreSQL: LISTEN on a connection of its own; every notification wakes the tail.

        The payload (the revision the write committed) is kept as a hint; a payload that
        is no revision, and every (re)connect, asks for a full poll instead.
        """
        def notified(payload: object) -> None:
            self.stats.notifications += 1
            revision = notified_revision(payload)
            if revision is None:
                wakeup.catch_up = True
            else:
                wakeup.revision = max(wakeup.revision, revision)
            wakeup.event.set()

        def connected() -> None:
            wakeup.catch_up = True  # whatever was missed while not listening
            wakeup.event.set()

        await listen_for_commits(self.repo, what="the tail's", on_notify=notified,
                                 on_connected=connected)
