"""Commit hints: how a writer without NOTIFY tells the publisher it committed.

MariaDB has no NOTIFY, so the lease holder's publisher would learn of another process's
commit only from its poll of the revision row. A writer that knows the deployment's NATS
(`decnet-ttp state set|clear --nats URL`) sends, after its commit, one core-NATS message
on `PREFIX.commit` naming the database identity and the revision. The publisher treats it
like a NOTIFY payload: a hint only. Lost, it costs latency (the poll covers it); forged,
it costs at most one bounded read (`HintGate`); for another database, it is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from decnet.ttp.constants import (
    COMMIT_HINT_BURST,
    COMMIT_HINT_RATE,
    COMMIT_HINT_TIMEOUT,
    MAX_COMMIT_HINT_BYTES,
    MAX_REVISION,
)

if TYPE_CHECKING:
    from decnet.ttp.store.database.jetstream import NatsNames
    from decnet.ttp.store.sql.rows import Head

log = logging.getLogger(__name__)

#: Longest database identity a hint may name (a random id, plus device:inode on SQLite).
_MAX_IDENTITY = 200


def commit_subject(names: NatsNames) -> str:
    """The plain (not JetStream) subject writers send their commit hints on."""
    return f"{names.prefix}.commit"


def encode_hint(identity: str, revision: int) -> bytes:
    return json.dumps({"database": identity, "revision": revision},
                      separators=(",", ":")).encode()


def decode_hint(data: bytes) -> tuple[str, int] | None:
    """(identity, revision) of a hint, or None for anything else (anyone who can publish
    on the subject can send one: the payload is bounded and checked, never trusted)."""
    if len(data) > MAX_COMMIT_HINT_BYTES:
        return None
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    identity, revision = body.get("database"), body.get("revision")
    if not isinstance(identity, str) or not 0 < len(identity) <= _MAX_IDENTITY:
        return None
    if type(revision) is not int or not 0 < revision <= MAX_REVISION:
        return None
    return identity, revision


async def send_commit_hint(url: str, names: NatsNames, head: Head) -> bool:
    """Tell the publisher that `head` committed; False when NATS did not take it within
    `COMMIT_HINT_TIMEOUT` (the writer's command goes on: the publisher's poll covers it)."""
    import nats  # a writer without --nats never imports nats-py

    async def quiet(exc: Exception) -> None:
        log.debug("NATS (commit hint): %s", exc)

    async def send() -> None:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0,
                                connect_timeout=COMMIT_HINT_TIMEOUT, error_cb=quiet)
        try:
            await nc.publish(commit_subject(names), encode_hint(head.identity, head.revision))
            await nc.flush()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    try:
        # nats.connect keeps retrying a server that refuses: the deadline is ours
        await asyncio.wait_for(send(), COMMIT_HINT_TIMEOUT)
    except Exception as exc:  # any failure only costs latency
        log.debug("commit hint not sent to %s: %s", url, exc or type(exc).__name__)
        return False
    return True


class HintGate:
    """Passes at most `rate` hints a second (bursts of `burst`) to `wake`; a hint over
    the budget is merged into one wake-up (the highest revision) when a token is back."""

    def __init__(self, wake: Callable[[int], None], *, rate: float = COMMIT_HINT_RATE,
                 burst: int = COMMIT_HINT_BURST) -> None:
        self.wake = wake
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None
        #: Hints merged into a later wake-up because the budget was spent.
        self.deferred = 0

    def offer(self, revision: int) -> None:
        if self._take():
            self.wake(revision)
            return
        self.deferred += 1
        self._pending = max(self._pending, revision)
        if self._timer is None:
            delay = (1.0 - self._tokens) / self.rate
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _release(self) -> None:
        self._timer = None
        revision, self._pending = self._pending, 0
        if revision and self._take():
            self.wake(revision)
        elif revision:
            self.offer(revision)
            self.deferred -= 1
