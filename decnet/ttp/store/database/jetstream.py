"""The change log fanned out through a NATS JetStream stream.

The database stays the truth. One publisher (the master holding the lease) reads the
change log past the stream's last published revision and publishes each entry, in
revision order, with the rows it carries (so a worker applies it without a query).
Every publish names the stream sequence it expects to follow
(`Nats-Expected-Last-Sequence`): two publishers that overlap cannot both append, so each
revision is in the stream once, in order. Workers (`ChangeFeed`) hand each message to
their `Tail`, which applies the next revision and falls back to the database on a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import DeliverPolicy, DiscardPolicy, StreamConfig

from decnet.ttp.constants import (
    CHANGE_LOG_BATCH,
    DB_CONNECT_TIMEOUT,
    LISTEN_KEEPALIVE,
    NATS_CONNECT_TIMEOUT,
    NATS_RETRY,
    NATS_STREAM_MAX_MSGS,
    NOTIFY_CHANNEL,
    PUBLISH_POLL_INTERVAL,
    TAIL_POLL_INTERVAL,
)
from decnet.ttp.loops import Backoff, Outage, cancel_and_wait
from decnet.ttp.store.codec import scoped_to_dict, state_from_dict
from decnet.ttp.store.sql.rows import Head, LogEntry, StoredRule, StoredScoped, StoredState
from decnet.vocabulary import ChangeKind, RuleState, Scope, ScopedState

if TYPE_CHECKING:
    from decnet.ttp.store.database.tail import Tail
    from decnet.ttp.store.sql.repository import RuleRepository

log = logging.getLogger(__name__)

_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Pauses between attempts at (re)connecting the publisher's LISTEN connection.
LISTEN_RETRY = (0.1, 5.0)
#: JetStream API error code: the expected last sequence did not match.
_WRONG_LAST_SEQUENCE = 10071


@dataclass(frozen=True, slots=True)
class NatsNames:
    """Every stream, bucket and subject of one deployment, derived from its prefix."""

    prefix: str

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(f"NATS prefix {self.prefix!r}: use 1-64 of A-Z a-z 0-9 _ -")

    @property
    def stream(self) -> str:
        return f"{self.prefix}_changes"

    @property
    def subject(self) -> str:
        return f"{self.prefix}.changes"

    @property
    def fleet_bucket(self) -> str:
        return f"{self.prefix}_fleet"


# wire format ---------------------------------------------------------------------------

def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def encode_entry(entry: LogEntry, identity: str) -> bytes:
    """One change-log entry (with its rows) and the database identity, as JSON bytes."""
    rule = entry.rule
    stored = entry.state
    body: dict[str, Any] = {
        "db": identity, "revision": entry.revision, "rule_id": entry.rule_id,
        "kind": entry.change_kind.value,
        "rule": None if rule is None else {
            "rule_version": rule.rule_version, "source_path": rule.source_path,
            "yaml": rule.yaml_content, "updated_at": _time(rule.updated_at),
            "updated_by": rule.updated_by, "revision": rule.revision,
            "compiled_form": rule.compiled_form, "compiled_by": rule.compiled_by},
        "state": None if stored is None else {
            "revision": stored.revision, "state": stored.state.state.value,
            "confidence_max": stored.state.confidence_max,
            "expires_at": _time(stored.state.expires_at), "reason": stored.state.reason,
            "set_by": stored.state.set_by, "set_at": _time(stored.state.set_at)},
    }
    if entry.scoped is not None:
        body["scoped"] = {"revision": entry.scoped.revision,
                          "states": [scoped_to_dict(item) for item in entry.scoped.states]}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_entry(data: bytes) -> tuple[str, LogEntry]:
    """The database identity and entry of a message; ValueError when it is not one."""
    try:
        body = json.loads(data)
        rule = body["rule"]
        stored = body["state"]
        entry = LogEntry(
            revision=int(body["revision"]), rule_id=str(body["rule_id"]),
            change_kind=ChangeKind(body["kind"]),
            rule=None if rule is None else StoredRule(
                body["rule_id"], int(rule["rule_version"]), rule["source_path"],
                str(rule["yaml"]), _parse_time(rule["updated_at"]) or datetime.min,
                rule["updated_by"], int(rule["revision"]), _text(rule.get("compiled_form")),
                _text(rule.get("compiled_by"))),
            state=None if stored is None else StoredState(int(stored["revision"]), RuleState(
                state=stored["state"], confidence_max=stored["confidence_max"],
                expires_at=_parse_time(stored["expires_at"]), reason=stored["reason"],
                set_by=stored["set_by"], set_at=_parse_time(stored["set_at"]))),
            scoped=_scoped(body.get("scoped")),
            database=str(body["db"]),
        )
        return str(body["db"]), entry
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a change message: {exc}") from None


def _text(value: Any) -> str | None:
    """An optional text field (absent in messages from before the stored form)."""
    return None if value is None else str(value)


def _scoped(data: Any) -> StoredScoped | None:
    if data is None:
        return None
    return StoredScoped(int(data["revision"]), tuple(
        ScopedState(Scope(frozenset(item["deckies"]), frozenset(item["sensors"])),
                    state_from_dict(item)) for item in data["states"]))


# connection --------------------------------------------------------------------------

class NatsUnavailable(ConnectionError):
    """The NATS server cannot be reached (refused, or no answer in time)."""


async def connect(url: str, *, on_lost: Callable[[], None] | None = None) -> Client:
    """A NATS connection that does not reconnect by itself: a lost connection calls
    `on_lost`, and the owner's loop connects again (and catches up)."""

    async def closed() -> None:
        if on_lost is not None:
            on_lost()

    async def error(exc: Exception) -> None:
        log.debug("NATS: %s", exc)

    # nats.connect keeps retrying a server that refuses: the deadline is ours
    try:
        return await asyncio.wait_for(nats.connect(
            url, allow_reconnect=False, connect_timeout=NATS_CONNECT_TIMEOUT,
            max_reconnect_attempts=0, closed_cb=closed, disconnected_cb=closed,
            error_cb=error), 2 * NATS_CONNECT_TIMEOUT)
    except TimeoutError:
        raise NatsUnavailable(f"cannot connect to NATS at {url}") from None


async def ensure_stream(nc: Client, names: NatsNames) -> None:
    """Create the change stream when missing (idempotent)."""
    js = nc.jetstream()
    try:
        await js.stream_info(names.stream)
    except nats.js.errors.NotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):
            await js.add_stream(StreamConfig(
                name=names.stream, subjects=[names.subject], max_msgs=NATS_STREAM_MAX_MSGS,
                discard=DiscardPolicy.OLD))


# publisher -----------------------------------------------------------------------------

@dataclass(slots=True)
class PublisherStats:
    published: int = 0
    conflicts: int = 0
    skipped_gaps: int = 0
    errors: int = 0


class ChangePublisher:
    """Publishes each committed revision of `repo` to the stream, once and in order.

    It reads the revision row every `poll_interval` seconds (one cheap query); on
    PostgreSQL a LISTEN connection wakes it at each commit, and the poll (every
    `TAIL_POLL_INTERVAL` there unless given) is only the safety net.
    """

    def __init__(self, repo: RuleRepository, url: str, names: NatsNames, *,
                 poll_interval: float | None = None,
                 batch: int = CHANGE_LOG_BATCH) -> None:
        self.repo = repo
        self.url = url
        self.names = names
        self.listens = repo.dialect == "postgresql"
        self.poll_interval = poll_interval or (
            TAIL_POLL_INTERVAL if self.listens else PUBLISH_POLL_INTERVAL)
        self.batch = batch
        self.stats = PublisherStats()
        self.published_revision: int | None = None
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Publish until cancelled; NATS or database outages are retried with a backoff."""
        listener = asyncio.get_running_loop().create_task(
            self._listen(), name="decnet-ttp-publish-listen") if self.listens else None
        try:
            await self._run()
        finally:
            await cancel_and_wait(listener, logger=log)

    async def _listen(self) -> None:
        """PostgreSQL: every notification of a commit wakes the publisher."""
        import asyncpg  # PostgreSQL only

        backoff = Backoff(*LISTEN_RETRY)
        outage = Outage(log, f"the publisher's LISTEN {NOTIFY_CHANNEL}")
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.repo.asyncpg_dsn(), timeout=DB_CONNECT_TIMEOUT)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: self._wake.set())
                outage.recovered()
                backoff.reset()
                self._wake.set()  # whatever committed while not listening
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), LISTEN_KEEPALIVE)
                    if not lost.is_set():
                        await conn.execute("SELECT 1", timeout=DB_CONNECT_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage.failed(exc, "polling continues")
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(backoff.failed())

    async def _run(self) -> None:
        backoff = Backoff(*NATS_RETRY)
        outage = Outage(log, "publishing changes to NATS")
        while True:
            nc: Client | None = None
            lost = asyncio.Event()
            try:
                nc = await connect(self.url, on_lost=lost.set)
                await ensure_stream(nc, self.names)
                outage.recovered()
                backoff.reset()
                await self._publish_loop(nc, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.errors += 1
                outage.failed(exc, "workers follow the database meanwhile")
            finally:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
            await asyncio.sleep(backoff.failed())

    async def _stream_tail(self, nc: Client, head: Head) -> tuple[int, int]:
        """(last stream sequence, last revision to publish after)."""
        js = nc.jetstream()
        info = await js.stream_info(self.names.stream)
        last_seq = info.state.last_seq
        if info.state.messages:
            try:
                msg = await js.get_last_msg(self.names.stream, self.names.subject)
                identity, entry = decode_entry(msg.data or b"")
            except (ValueError, nats.js.errors.NotFoundError):
                return last_seq, head.revision
            if identity == head.identity and entry.revision <= head.revision:
                return last_seq, entry.revision  # resume: nothing committed is lost
        return last_seq, head.revision  # empty, purged or another database: from now on

    async def _publish_loop(self, nc: Client, lost: asyncio.Event) -> None:
        js = nc.jetstream()
        head = await self.repo.head()
        last_seq, published = await self._stream_tail(nc, head)
        self.published_revision = published
        while not lost.is_set():
            head = await self.repo.head()
            if head.revision < published:  # database restored or replaced
                last_seq, published = await self._stream_tail(nc, head)
            while published < head.revision:
                entries = await self.repo.changes_since(published, head.revision, self.batch)
                if not entries or entries[0].revision != published + 1:
                    # Pruned from the log: the workers see the gap and read the database.
                    self.stats.skipped_gaps += 1
                    published = entries[0].revision - 1 if entries else head.revision
                    continue
                for entry in entries:
                    try:
                        ack = await js.publish(
                            self.names.subject, encode_entry(entry, head.identity),
                            headers={"Nats-Expected-Last-Sequence": str(last_seq),
                                     "Nats-Msg-Id": f"{head.identity}:{entry.revision}"})
                    except nats.js.errors.APIError as exc:
                        if exc.err_code != _WRONG_LAST_SEQUENCE:
                            raise
                        self.stats.conflicts += 1  # another publisher appended: re-read
                        last_seq, published = await self._stream_tail(nc, head)
                        break
                    last_seq, published = ack.seq, entry.revision
                    self.stats.published += 1
                self.published_revision = published
            self._wake.clear()
            waits = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waits, timeout=self.poll_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        raise ConnectionError("NATS connection lost")


# worker feed ---------------------------------------------------------------------------

@dataclass(slots=True)
class FeedStats:
    received: int = 0
    gaps: int = 0
    undecodable: int = 0
    connects: int = 0
    outages: int = 0


class ChangeFeed:
    """A worker's subscription to the change stream, handing each entry to its tail.

    `healthy` is true while subscribed; every change of it calls `on_health(healthy)`
    (the tail then polls the database at once and sets its cadence).
    """

    def __init__(self, url: str, names: NatsNames) -> None:
        self.url = url
        self.names = names
        self.healthy = False
        self.problem: str | None = "not connected yet"
        self.stats = FeedStats()

    async def run(self, tail: Tail, on_health: Callable[[bool], Awaitable[None] | None]) -> None:
        backoff = Backoff(*NATS_RETRY)
        outage = Outage(log, "the NATS change feed")
        while True:
            nc: Client | None = None
            lost = asyncio.Event()
            try:
                nc = await connect(self.url, on_lost=lost.set)
                await ensure_stream(nc, self.names)
                js = nc.jetstream()

                async def handle(msg: Any) -> None:
                    self.stats.received += 1
                    try:
                        identity, entry = decode_entry(msg.data)
                    except ValueError:
                        self.stats.undecodable += 1
                        return
                    if not tail.apply_pushed(identity, entry):
                        self.stats.gaps += 1

                sub = await js.subscribe(self.names.subject, cb=handle, ordered_consumer=True,
                                         deliver_policy=DeliverPolicy.NEW,
                                         idle_heartbeat=NATS_CONNECT_TIMEOUT)
                self.stats.connects += 1
                outage.recovered(" (following the stream again)")
                backoff.reset()
                await self._set(True, None, on_health)
                try:
                    await lost.wait()
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                raise ConnectionError("NATS connection lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage.failed(exc, "following the database instead")
                await self._set(False, f"NATS: {exc or type(exc).__name__}", on_health)
            finally:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
            await asyncio.sleep(backoff.failed())

    async def _set(self, healthy: bool, problem: str | None,
                   on_health: Callable[[bool], Awaitable[None] | None]) -> None:
        changed = healthy != self.healthy
        if changed and not healthy:
            self.stats.outages += 1
        self.healthy, self.problem = healthy, problem
        if changed:
            result = on_health(healthy)
            if result is not None:
                await result
