"""The change log fanned out through a NATS JetStream stream.

The database stays the truth. One publisher (the master holding the lease) reads the
change log past the stream's last published revision and publishes each entry, in
revision order, with the rows it carries (so a worker applies it without a query).
Every publish names the stream sequence it expects to follow
(`Nats-Expected-Last-Sequence`): two publishers that overlap cannot both append, so each
revision is in the stream once, in order. Workers follow it with a `ChangeFeed`
(`decnet.ttp.store.database.feed`); the lease holder's head beacon is in `beacon`.
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
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, StreamConfig

from decnet.ttp.constants import (
    CHANGE_LOG_BATCH,
    NATS_CONNECT_TIMEOUT,
    NATS_RETRY,
    NATS_STREAM_MAX_MSGS,
    PUBLISH_POLL_INTERVAL,
    TAIL_POLL_INTERVAL,
)
from decnet.ttp.loops import Backoff, Outage, cancel_and_wait, raise_if_cancelled
from decnet.ttp.store.codec import scoped_to_dict, state_from_dict
from decnet.ttp.store.database.commithint import HintGate, commit_subject, decode_hint
from decnet.ttp.store.database.filewake import watch_commits
from decnet.ttp.store.database.listen import listen_for_commits, notified_revision
from decnet.ttp.store.sql.rows import Head, LogEntry, StoredRule, StoredScoped, StoredState
from decnet.vocabulary import ChangeKind, RuleState, Scope, ScopedState

if TYPE_CHECKING:
    from decnet.ttp.store.sql.repository import RuleRepository

log = logging.getLogger(__name__)

_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Seconds before the publisher reads the revision row again when a SQLite file was
#: written but its revision had not moved yet (the commit becomes visible just after).
FILE_RECHECK = 0.005
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
    def head_subject(self) -> str:
        """The plain (not JetStream) subject of the lease holder's head beacon."""
        return f"{self.prefix}.head"

    @property
    def fleet_bucket(self) -> str:
        return f"{self.prefix}_fleet"

    @property
    def bus_stream(self) -> str:
        """The stream keeping the bus's rule topics (`{prefix}.ttp.rule.>`)."""
        return f"{self.prefix}_bus"


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


async def connected_forever(
        url: str, session: Callable[[Client, asyncio.Event, Callable[[], None]], Awaitable[None]],
        outage: Outage, meanwhile: str, *, on_error: Callable[[], None] | None = None) -> None:
    """Run `session(nc, lost, ready)` on a fresh NATS connection until cancelled. The
    session calls `ready()` once its set-up worked (the outage ends, the backoff resets)
    and returns (or raises) when `lost` is set; every failure is logged through `outage`
    ("... `meanwhile`") and retried after a growing pause."""
    backoff = Backoff(*NATS_RETRY)

    def ready() -> None:
        outage.recovered()
        backoff.reset()

    while True:
        raise_if_cancelled()
        nc: Client | None = None
        lost = asyncio.Event()
        try:
            nc = await connect(url, on_lost=lost.set)
            await session(nc, lost, ready)
            raise ConnectionError("NATS connection lost")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_error is not None:
                on_error()
            outage.failed(exc, meanwhile)
        finally:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
        await asyncio.sleep(backoff.failed())


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
    #: Commit hints that woke the publisher (at most `COMMIT_HINT_RATE` a second).
    hints: int = 0
    #: Commit hints for a revision already published: nothing read.
    hints_stale: int = 0
    #: Commit hints dropped: unreadable, or for another database.
    hints_ignored: int = 0


class ChangePublisher:
    """Publishes each committed revision of `repo` to the stream, once and in order.

    It learns of a commit as it happens wherever the database allows: this process's
    own writes (the master's sync, `RuleRepository.on_commit`) wake it with their
    revision; on PostgreSQL so does a LISTEN connection (`NOTIFY` names the revision);
    on a SQLite file an inotify watch of the file's log (`filewake`) wakes it to read
    the revision row; on any database, writers given `--nats` send a commit hint
    (`commithint`) on `PREFIX.commit`. The revision row is also read every
    `poll_interval` seconds: the safety net (`TAIL_POLL_INTERVAL` where a wake-up source
    covers the writers: NOTIFY, the file watch, or hints arriving on this connection) or,
    on MariaDB before any hint, how it learns of other processes' writes
    (`PUBLISH_POLL_INTERVAL`).

    `announce(identity, entry)`, when given, is called after each entry is in the
    stream (the master hands it to the rule topics of the bus); it must not block.
    """

    def __init__(self, repo: RuleRepository, url: str, names: NatsNames, *,
                 poll_interval: float | None = None,
                 batch: int = CHANGE_LOG_BATCH,
                 announce: Callable[[str, LogEntry], None] | None = None) -> None:
        self.repo = repo
        self.url = url
        self.names = names
        self.listens = repo.dialect == "postgresql"
        self.watches_file = repo.engines.sqlite_path is not None
        self._poll_interval = poll_interval
        self.batch = batch
        self.announce = announce
        self.stats = PublisherStats()
        self.published_revision: int | None = None
        self._wake = asyncio.Event()
        #: The highest revision a wake-up named since the loop last looked (0: none).
        self._hint = 0
        #: A wake-up that names no revision: read the revision row.
        self._read_head = False
        self._file_watched = False
        #: The database identity the stream follows (hints naming another are ignored).
        self._identity: str | None = None
        #: A hint for this database arrived on the current connection.
        self._hinted = False
        self._hint_gate = HintGate(self._woken_by_hint)

    @property
    def poll_interval(self) -> float:
        """Seconds between reads of the revision row when nothing wakes the publisher."""
        if self._poll_interval:
            return self._poll_interval
        covered = self.listens or self._file_watched or self.repo.is_memory or self._hinted
        return TAIL_POLL_INTERVAL if covered else PUBLISH_POLL_INTERVAL

    def wake(self, revision: int | None = None) -> None:
        """A commit happened: `revision` when known (a hint), else the row is read."""
        if revision is None:
            self._read_head = True
        else:
            self._hint = max(self._hint, revision)
        self._wake.set()

    async def _on_hint(self, msg: Msg) -> None:
        """A writer's commit hint: a wake-up naming its revision, when it is news."""
        hint = decode_hint(msg.data or b"")
        if hint is None or hint[0] != self._identity:
            self.stats.hints_ignored += 1
            return
        self._hinted = True
        published = self.published_revision
        if published is not None and hint[1] <= published:
            self.stats.hints_stale += 1
            return
        self._hint_gate.offer(hint[1])

    def _woken_by_hint(self, revision: int) -> None:
        self.stats.hints += 1
        self.wake(revision)

    async def run(self) -> None:
        """Publish until cancelled; NATS or database outages are retried with a backoff."""
        loop = asyncio.get_running_loop()
        helpers = []
        if self.listens:
            helpers.append(loop.create_task(listen_for_commits(
                self.repo, what="the publisher's", on_connected=self.wake,
                on_notify=lambda payload: self.wake(notified_revision(payload))),
                name="decnet-ttp-publish-listen"))
        if self.watches_file:
            helpers.append(loop.create_task(self._watch_file(),
                                            name="decnet-ttp-publish-filewake"))
        forget = self.repo.on_commit(self.wake)
        try:
            await self._run()
        finally:
            forget()
            self._hint_gate.close()
            await cancel_and_wait(*helpers, logger=log)

    async def _watch_file(self) -> None:
        path = self.repo.engines.sqlite_path
        assert path is not None
        try:
            self._file_watched = True
            self.wake()
            await watch_commits(path, self.wake)
        except OSError as exc:
            log.warning("cannot watch %s for commits (%s); reading its revision every %g s",
                        path, exc, PUBLISH_POLL_INTERVAL)
        finally:
            self._file_watched = False

    async def _run(self) -> None:
        async def session(nc: Client, lost: asyncio.Event, ready: Callable[[], None]) -> None:
            await ensure_stream(nc, self.names)
            ready()
            await self._publish_loop(nc, lost)

        def failed() -> None:
            self.stats.errors += 1

        await connected_forever(self.url, session, Outage(log, "publishing changes to NATS"),
                                "workers follow the database meanwhile", on_error=failed)

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
        """Publish what committed past the stream, then wait for a wake-up or the poll.

        A wake-up naming a revision is followed straight from the change log (one
        statement, no read of the revision row); anything unexpected there (a gap, the
        entries of another database) and every poll or unnamed wake-up read the row.
        """
        js = nc.jetstream()
        head = await self.repo.head()
        self._identity, self._hinted = head.identity, False
        last_seq, published = await self._stream_tail(nc, head)
        await nc.subscribe(commit_subject(self.names), cb=self._on_hint)
        await nc.flush()  # subscribed before anyone is told the publisher runs
        self.published_revision = published
        read_head = True
        while not lost.is_set():
            raise_if_cancelled()
            hint, self._hint = self._hint, 0
            woken, self._read_head = self._read_head, False
            self._wake.clear()
            recheck = False
            if read_head or woken:
                head = await self.repo.head()
                self._identity = head.identity
                if head.revision < published:  # database restored or replaced
                    last_seq, published = await self._stream_tail(nc, head)
                target = head.revision
                # a file written just before its commit is visible: look again once
                recheck = woken and self._file_watched and target == published
            else:
                target = max(hint, published)
            read_head = False
            while published < target:
                entries = await self.repo.changes_since(published, target, self.batch)
                if entries and entries[0].database != head.identity:
                    read_head = True  # another database behind the same URL
                    break
                if not entries or entries[0].revision != published + 1:
                    if target != head.revision:  # a hint: the revision row decides
                        read_head = True
                        break
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
                    raise_if_cancelled()
                    last_seq, published = ack.seq, entry.revision
                    self.stats.published += 1
                    if self.announce is not None:
                        self.announce(head.identity, entry)
                self.published_revision = published
            if read_head:
                continue
            waits = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waits, timeout=min(self.poll_interval, FILE_RECHECK)
                                   if recheck else self.poll_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if not self._wake.is_set():
                read_head = True  # the poll
        raise ConnectionError("NATS connection lost")
