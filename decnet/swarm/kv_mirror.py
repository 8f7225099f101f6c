"""A live copy of a JetStream key-value bucket, kept by one watch.

The master's console and /metrics read the fleet's reports on every request; listing and
fetching a thousand keys from NATS each time is what this avoids. One watch delivers every
key's latest value, then each put and delete as it happens; values are parsed once (JSON)
and handed out as they are. A value older than the bucket's TTL is dropped at read time
(the server expires such messages without a delete the watch could see). While NATS cannot
be reached a read says so at once (`MirrorUnavailable`) rather than waiting on it, and the
mirror reconnects in the background, starting over from a fresh copy.

Memory is bounded by `MirrorLimits`: keys, bytes of JSON in all, and bytes of one value
(a larger one is kept as `None`, unreadable, so its key still shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from decnet.ttp.constants import FLEET_MIRROR_CHECK, FLEET_MIRROR_FIRST_WAIT, NATS_RETRY
from decnet.ttp.loops import Backoff, Outage, cancel_and_wait, raise_if_cancelled
from decnet.ttp.store.database.jetstream import connect

log = logging.getLogger(__name__)

#: Opens the bucket on a fresh connection.
OpenBucket = Callable[[Client], Awaitable[KeyValue]]


class MirrorUnavailable(ConnectionError):
    """The bucket cannot be read now: NATS is away, or the first copy is not there yet.
    Its text is the kind of failure only (never the URL, which may hold credentials)."""


@dataclass(frozen=True, slots=True)
class MirrorLimits:
    max_keys: int
    #: bytes of JSON kept in all
    max_bytes: int
    #: bytes of one value; a larger one is kept as None
    max_value: int


@dataclass(slots=True)
class _Item:
    value: Any
    size: int
    #: when the server stored it, seconds since the epoch
    stored_at: float


class _Copy:
    """Keys to parsed values, within the limits."""

    def __init__(self, limits: MirrorLimits, what: str) -> None:
        self.limits = limits
        self.what = what
        self.items: dict[str, _Item] = {}
        self.bytes = 0
        self.refused = 0
        #: bumped by every change of `items`
        self.changes = 0

    def apply(self, entry: KeyValue.Entry) -> None:
        if entry.operation in (KV_DEL, KV_PURGE):
            self.delete(entry.key)
            return
        created: Any = entry.created  # typed int, delivered as the server's datetime
        stored_at = created.timestamp() if isinstance(created, datetime) else time.time()
        self.put(entry.key, entry.value or b"", stored_at)

    def put(self, key: str, raw: bytes, stored_at: float) -> None:
        old = self.items.get(key)
        size = len(raw) if len(raw) <= self.limits.max_value else 0
        if (old is None and len(self.items) >= self.limits.max_keys) or \
                self.bytes - (old.size if old else 0) + size > self.limits.max_bytes:
            if old is None:
                self._refuse(key)
                return
            size = 0  # an update past the byte budget: the key stays, unreadable
        value = None
        if size:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = None
        elif raw:
            log.warning("%s: the value of %r (%d bytes) is over the mirror's limits; kept "
                        "as unreadable", self.what, key[:64], len(raw))
        self.bytes += size - (old.size if old else 0)
        self.items[key] = _Item(value, size, stored_at)
        self.changes += 1

    def delete(self, key: str) -> None:
        old = self.items.pop(key, None)
        if old is not None:
            self.bytes -= old.size
            self.changes += 1

    def expire(self, oldest: float) -> None:
        for key in [k for k, item in self.items.items() if item.stored_at < oldest]:
            self.delete(key)

    def _refuse(self, key: str) -> None:
        self.refused += 1
        if self.refused == 1:
            log.warning("%s: more keys than the mirror keeps (%d keys, %d bytes); %r and "
                        "later new keys are left out", self.what, self.limits.max_keys,
                        self.limits.max_bytes, key[:64])


async def _next(watcher: KeyValue.KeyWatcher, lost: asyncio.Event,
                check: float) -> KeyValue.Entry | None:
    """The watch's next entry (None: the first copy is complete); raises when the
    connection is lost, noticed within `check` seconds."""
    while not lost.is_set():
        raise_if_cancelled()  # nats-py's requests and `updates` wait with wait_for
        with contextlib.suppress(NatsTimeout):
            entry: KeyValue.Entry | None = await watcher.updates(  # type: ignore[no-untyped-call]
                timeout=check)
            return entry
    raise ConnectionError("NATS connection lost")


async def _first_copy(watcher: KeyValue.KeyWatcher, copy: _Copy, lost: asyncio.Event,
                      check: float) -> None:
    while (entry := await _next(watcher, lost, check)) is not None:
        copy.apply(entry)


async def read_bucket(url: str, open_bucket: OpenBucket, limits: MirrorLimits, *,
                      what: str = "bucket") -> list[tuple[str, Any]]:
    """Every key's latest value, read once through one watch (no per-key round trip)."""
    nc = await connect(url)
    try:
        bucket = await open_bucket(nc)
        watcher = await bucket.watchall()
        try:
            copy = _Copy(limits, what)
            await _first_copy(watcher, copy, asyncio.Event(), FLEET_MIRROR_CHECK)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return [(key, item.value) for key, item in copy.items.items()]
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


class KvMirror:
    """The bucket `open_bucket` opens on `url`, copied and followed from the first `items()`
    (or `start()`) until `close()`; `what` names it in logs and errors."""

    def __init__(self, url: str, open_bucket: OpenBucket, limits: MirrorLimits, *,
                 what: str, first_wait: float = FLEET_MIRROR_FIRST_WAIT,
                 check: float = FLEET_MIRROR_CHECK,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.open_bucket = open_bucket
        self.limits = limits
        self.what = what
        self.first_wait = first_wait
        self.check = check
        self.clock = clock
        #: None while NATS cannot be read (then `error` says why)
        self._copy: _Copy | None = None
        self._ttl: float | None = None
        #: copies made so far (each reconnect starts a new one)
        self._copies = 0
        self.error = "not connected yet"
        self._tried = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def available(self) -> bool:
        return self._copy is not None

    @property
    def version(self) -> tuple[int, int]:
        """Changes when what `items()` returns may have: a reader may keep what it derives
        from the items until then (expired keys are dropped by `items()`, which counts)."""
        copy = self._copy
        return (self._copies, copy.changes) if copy is not None else (self._copies, -1)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._tried = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"mirror {self.what}")

    async def items(self) -> list[tuple[str, Any]]:
        """(key, parsed value or None) of every live key; raises `MirrorUnavailable`
        while NATS cannot be read (the first call waits up to `first_wait` for a copy)."""
        self.start()
        if not self._tried.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tried.wait(), self.first_wait)
        copy = self._copy
        if copy is None:
            raise MirrorUnavailable(self.error)
        if self._ttl:
            copy.expire(self.clock() - self._ttl)
        return [(key, item.value) for key, item in copy.items.items()]

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task, logger=log)
        self._copy = None
        self.error = "closed"

    async def _run(self) -> None:
        backoff = Backoff(*NATS_RETRY)
        outage = Outage(log, f"mirroring {self.what}")
        while True:
            raise_if_cancelled()
            nc: Client | None = None
            lost = asyncio.Event()
            try:
                nc = await connect(self.url, on_lost=lost.set)
                bucket = await self.open_bucket(nc)
                ttl = (await bucket.status()).ttl
                watcher = await bucket.watchall()
                try:
                    copy = _Copy(self.limits, self.what)
                    await _first_copy(watcher, copy, lost, self.check)
                    self._copy, self._ttl = copy, ttl or None
                    self._copies += 1
                    self._tried.set()
                    outage.recovered()
                    backoff.reset()
                    while True:
                        entry = await _next(watcher, lost, self.check)
                        if entry is not None:
                            copy.apply(entry)
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._copy = None
                self.error = type(exc).__name__
                self._tried.set()
                outage.failed(exc, "shown as unavailable; retrying")
            finally:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()
            await asyncio.sleep(backoff.failed())
