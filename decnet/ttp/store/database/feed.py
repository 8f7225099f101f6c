"""`ChangeFeed`: a worker follows the change stream, and knows from NATS alone that it is
current.

On each connection it subscribes to the lease holder's head beacon (`beacon`) and to the
stream with an ordered consumer that starts right after its watermark: a worker that was
away replays what it missed from the stream, without reading the database. The database
is read only when the stream cannot vouch for the watermark: the stream is empty or holds
another database's revisions (read at once), or no longer reaches back to the watermark
(trimmed or purged: the first message replayed is a gap, read up to it), or a beacon
announces a head the stream did not deliver within the grace. While beacons come, the
tail runs no safety poll at all; while they do not, a slow one; while NATS is away, its
normal poll. Beacons are not read while a reconnected worker replays the stream (for at
most `REPLAY_PATIENCE`): under load a replay may outlast the beacon's grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.js.errors
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from decnet.ttp.constants import NATS_CONNECT_TIMEOUT, NATS_RETRY
from decnet.ttp.loops import Backoff, Outage, raise_if_cancelled
from decnet.ttp.store.database.beacon import HeadWatch, Verdict, decode_beacon
from decnet.ttp.store.database.jetstream import (
    NatsNames,
    connect,
    decode_entry,
    ensure_stream,
)

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

    from decnet.ttp.store.database.tail import Tail

log = logging.getLogger(__name__)

NOT_CONNECTED = "not connected yet"
#: Seconds a reconnected worker's replay from the stream may take before the head
#: beacon's grace applies again.
REPLAY_PATIENCE = 10.0


@dataclass(slots=True)
class FeedStats:
    received: int = 0
    gaps: int = 0
    undecodable: int = 0
    connects: int = 0
    outages: int = 0
    #: Connections that resumed from the stream (no database read).
    stream_resumes: int = 0
    #: Connections after which the database was read (stream empty, another database).
    database_resumes: int = 0
    beacons: int = 0
    #: Database reads a beacon asked for (a revision the stream did not deliver in time).
    beacon_reads: int = 0


class ChangeFeed:
    """A worker's subscription to the change stream and the head beacon, for its tail.

    `healthy` is true while subscribed; `vouched()` while, in addition, beacons of the
    worker's database keep coming (the tail then skips its safety poll).
    """

    def __init__(self, url: str, names: NatsNames, *, watch: HeadWatch | None = None) -> None:
        self.url = url
        self.names = names
        self.healthy = False
        self.problem: str | None = NOT_CONNECTED
        self.stats = FeedStats()
        self.watch = watch or HeadWatch()
        #: The last revision the stream held when this connection resumed, and until
        #: when the replay may take to reach it: meanwhile beacons are not read (a long
        #: replay is no lost message).
        self._replay_to, self._replay_deadline = 0, 0.0

    def vouched(self) -> bool:
        return self.healthy and self.watch.fresh()

    async def run(self, tail: Tail) -> None:
        backoff = Backoff(*NATS_RETRY)
        outage = Outage(log, "the NATS change feed")
        while True:
            raise_if_cancelled()
            nc: Client | None = None
            lost = asyncio.Event()
            try:
                nc = await connect(self.url, on_lost=lost.set)
                await ensure_stream(nc, self.names)
                raise_if_cancelled()  # nats-py's connect and requests wait with wait_for
                await tail.viewed.wait()  # the watermark the stream resumes from
                await self._follow(nc, tail, lost, outage, backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage.failed(exc, "following the database instead")
                self._set(tail, False, f"NATS: {exc or type(exc).__name__}")
            finally:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
            await asyncio.sleep(backoff.failed())

    async def _follow(self, nc: Client, tail: Tail, lost: asyncio.Event, outage: Outage,
                      backoff: Backoff) -> None:
        js = nc.jetstream()

        async def on_change(msg: Any) -> None:
            self.stats.received += 1
            try:
                identity, entry = decode_entry(msg.data)
            except ValueError:
                self.stats.undecodable += 1
                return
            if not tail.apply_pushed(identity, entry):
                self.stats.gaps += 1

        async def on_beacon(msg: Any) -> None:
            try:
                identity, head = decode_beacon(msg.data)
            except ValueError:
                self.stats.undecodable += 1
                return
            self.stats.beacons += 1
            if (tail.watermark or 0) < self._replay_to and \
                    self.watch.monotonic() < self._replay_deadline:
                return
            was_fresh = self.watch.fresh()
            verdict = self.watch.observe(identity, head, tail.identity, tail.watermark)
            if verdict is not Verdict.WAIT:
                self.stats.beacon_reads += 1
                tail.read_database(None if verdict is Verdict.CHECK else head)
            elif not was_fresh and self.watch.fresh():
                tail.reconsider()  # the safety poll can stop

        beacons = await nc.subscribe(self.names.head_subject, cb=on_beacon)
        start, from_stream = await self._resume_point(js, tail)
        sub = await js.subscribe(
            self.names.subject, stream=self.names.stream, cb=on_change,
            ordered_consumer=True, idle_heartbeat=NATS_CONNECT_TIMEOUT,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=start))
        self.stats.connects += 1
        if from_stream:
            self.stats.stream_resumes += 1
        else:
            self.stats.database_resumes += 1
        outage.recovered(" (following the stream again)")
        backoff.reset()
        self._set(tail, True, None, read_database=not from_stream)
        try:
            raise_if_cancelled()
            await lost.wait()
        finally:
            for subscription in (sub, beacons):
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
        raise ConnectionError("NATS connection lost")

    async def _resume_point(self, js: JetStreamContext, tail: Tail) -> tuple[int, bool]:
        """(stream sequence to start at, whether the stream covers what the tail missed).

        The start is at or before the revision right after the watermark (the stream
        holds each revision once, in order, with pruned ones skipped: counting back from
        its last message never overshoots); revisions replayed at or below the watermark
        are ignored, and a first message past it is a gap the tail reads from the database.
        """
        self._replay_to = 0
        state = (await js.stream_info(self.names.stream)).state
        after_last = state.last_seq + 1
        if not state.messages:
            return after_last, False
        try:
            last = await js.get_last_msg(self.names.stream, self.names.subject)
            identity, entry = decode_entry(last.data or b"")
        except (ValueError, nats.js.errors.NotFoundError):
            return after_last, False
        watermark = tail.watermark
        if watermark is None or identity != tail.identity or last.seq is None:
            return after_last, False
        if entry.revision <= watermark:
            return last.seq + 1, True
        self._replay_to = entry.revision
        self._replay_deadline = self.watch.monotonic() + REPLAY_PATIENCE
        return max(state.first_seq, last.seq - (entry.revision - watermark - 1)), True

    def _set(self, tail: Tail, healthy: bool, problem: str | None, *,
             read_database: bool = True) -> None:
        lost = self.healthy and not healthy
        # a first connection that fails is news too: the tail polls at once
        never_up = not healthy and self.problem == NOT_CONNECTED
        if lost:
            self.stats.outages += 1
            self.watch.forget()
        changed = healthy != self.healthy or never_up
        self.healthy, self.problem = healthy, problem
        if changed:
            tail.feed_changed(read_database=read_database)
