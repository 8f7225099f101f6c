"""The head beacon: how a worker knows it is current without asking the database.

The lease holder (`HeadBeacon`, run beside the `ChangePublisher`) reads the database's
head (identity and revision, one cheap query) every `HEAD_BEACON_INTERVAL` seconds and
publishes it on the plain NATS subject `PREFIX.head` (not the stream: a beacon missed is
replaced by the next one). A worker (`HeadWatch`) compares each beacon with its
watermark: at or past the head, nothing to do and no safety poll is needed; behind it for
longer than `HEAD_BEACON_GRACE` (a message lost, a publisher stuck between commit and
publish), read the database up to that head; a head below the watermark for as long
(a database restored to an older revision) polls it, which reloads. No beacon for
`HEAD_BEACON_STALE_AFTER` (no publisher alive, or it lost NATS) puts the worker back on
its slow safety poll. So an idle fleet costs the database one query per beacon,
whatever its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from decnet.ttp.constants import (
    HEAD_BEACON_GRACE,
    HEAD_BEACON_INTERVAL,
    HEAD_BEACON_STALE_AFTER,
    NATS_SAFETY_POLL_INTERVAL,
)
from decnet.ttp.loops import Outage, raise_if_cancelled
from decnet.ttp.store.database.jetstream import NatsNames, connected_forever

if TYPE_CHECKING:
    from nats.aio.client import Client

    from decnet.ttp.store.sql.repository import RuleRepository

log = logging.getLogger(__name__)


def encode_beacon(identity: str, head: int) -> bytes:
    return json.dumps({"db": identity, "head": head}, separators=(",", ":")).encode()


def decode_beacon(data: bytes) -> tuple[str, int]:
    """(database identity, head revision); ValueError when `data` is no beacon."""
    try:
        body = json.loads(data)
        identity, head = body["db"], body["head"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a head beacon: {exc}") from None
    if not isinstance(identity, str) or not isinstance(head, int) or isinstance(head, bool) \
            or head < 0:
        raise ValueError("not a head beacon: wrong field types")
    return identity, head


class HeadBeacon:
    """Publishes the database's head every `interval` seconds (the lease holder only).

    Database or NATS failures skip beats (workers then see the beacon go stale and poll
    the database themselves); NATS is reconnected with a backoff.
    """

    def __init__(self, repo: RuleRepository, url: str, names: NatsNames, *,
                 interval: float = HEAD_BEACON_INTERVAL) -> None:
        self.repo = repo
        self.url = url
        self.names = names
        self.interval = interval
        self.sent = 0

    async def run(self) -> None:
        async def session(nc: Client, lost: asyncio.Event, ready: Callable[[], None]) -> None:
            while not lost.is_set():
                head = await self.repo.head()
                await nc.publish(self.names.head_subject,
                                 encode_beacon(head.identity, head.revision))
                await nc.flush()
                self.sent += 1
                ready()
                raise_if_cancelled()  # nats-py's connect and flush wait with wait_for
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.interval)

        await connected_forever(self.url, session, Outage(log, "publishing the head beacon"),
                                "workers fall back to their safety-net poll meanwhile")


class Verdict(enum.Enum):
    """What a worker does about one beacon."""

    #: Nothing: the watermark is at the head, or the stream has time to deliver it.
    WAIT = "wait"
    #: Read the change log up to the announced head: the stream did not deliver it.
    READ = "read"
    #: Poll the database (identity and revision): the beacon names another database, or
    #: a head below the watermark.
    CHECK = "check"


class HeadWatch:
    """A worker's reading of the head beacons (pure bookkeeping; the feed feeds it).

    `fresh()` is true while beacons of the worker's database keep coming: the worker
    then needs no safety poll. `observe` says when the database must be read.
    """

    def __init__(self, *, grace: float = HEAD_BEACON_GRACE,
                 stale_after: float = HEAD_BEACON_STALE_AFTER,
                 quiet: float = NATS_SAFETY_POLL_INTERVAL,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.stale_after = stale_after
        self.quiet = quiet
        self.monotonic = monotonic
        #: When the last beacon of this worker's database arrived.
        self.last_heard: float | None = None
        #: The head it announced.
        self.head: int | None = None
        self._behind: tuple[int, float] | None = None  # (announced head, since)
        self._ahead_since: float | None = None  # the head below the watermark, since
        self._foreign_since: float | None = None

    def fresh(self) -> bool:
        until = self.fresh_until()
        return until is not None and self.monotonic() < until

    def fresh_until(self) -> float | None:
        """The monotonic time the beacon goes stale without another one; None: never heard."""
        return None if self.last_heard is None else self.last_heard + self.stale_after

    def forget(self) -> None:
        """The feed lost NATS: beacons heard before say nothing about what follows."""
        self.last_heard = self.head = None
        self._behind = self._ahead_since = self._foreign_since = None

    def observe(self, identity: str, head: int, own_identity: str | None,
                watermark: int | None) -> Verdict:
        now = self.monotonic()
        if own_identity is None or watermark is None:
            return Verdict.WAIT  # no view yet: the tail's first read covers it
        if identity != own_identity:
            # another database (replaced, or a second deployment on this prefix): check
            # once after the grace, then not again for `quiet` seconds
            if self._foreign_since is None:
                self._foreign_since = now
            if now - self._foreign_since >= self.grace:
                self._foreign_since = now + self.quiet
                return Verdict.CHECK
            return Verdict.WAIT
        self._foreign_since = None
        self.last_heard, self.head = now, head
        if head < watermark:
            # a beacon read before the last change, or a database restored to an older
            # revision (its next changes would look like duplicates): poll after the grace
            self._behind = None
            if self._ahead_since is None:
                self._ahead_since = now
            if now - self._ahead_since >= self.grace:
                self._ahead_since = None
                return Verdict.CHECK
            return Verdict.WAIT
        self._ahead_since = None
        if head == watermark:
            self._behind = None
            return Verdict.WAIT
        if self._behind is None or watermark >= self._behind[0]:
            self._behind = (head, now)  # behind a newer head: its own grace
            return Verdict.WAIT
        if now - self._behind[1] >= self.grace:
            self._behind = None
            return Verdict.READ
        return Verdict.WAIT
