"""PostgreSQL `LISTEN` on the change channel: how a worker's tail and the master's
publisher learn of a commit as it happens (each write sends `NOTIFY` with its revision).

One connection of its own per listener (a pooled one cannot hold LISTEN), kept alive by
a query every `LISTEN_KEEPALIVE` seconds and reconnected with a backoff when lost; a run
of failures is one outage in the log. Nothing is lost while it is down: every
(re)connect calls `on_connected`, and the caller then reads what committed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from decnet.ttp.constants import (
    DB_CONNECT_TIMEOUT,
    LISTEN_KEEPALIVE,
    MAX_REVISION,
    NOTIFY_CHANNEL,
)
from decnet.ttp.loops import Backoff, Outage, raise_if_cancelled

if TYPE_CHECKING:
    from decnet.ttp.store.sql.repository import RuleRepository

log = logging.getLogger(__name__)

#: Pauses between attempts at (re)connecting a LISTEN connection.
LISTEN_RETRY = (0.1, 5.0)


def notified_revision(payload: object) -> int | None:
    """The revision a NOTIFY payload names, or None when it names none a revision column
    can hold (anyone allowed to connect can NOTIFY on the channel: the payload is a hint)."""
    text = str(payload)
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    revision = int(text)
    return revision if 0 < revision <= MAX_REVISION else None


async def listen_for_commits(repo: RuleRepository, *, what: str,
                             on_notify: Callable[[object], None],
                             on_connected: Callable[[], None]) -> None:
    """LISTEN on `NOTIFY_CHANNEL` of `repo`'s database until cancelled.

    `on_notify(payload)` for each notification (the payload is a hint: anyone allowed
    to connect can NOTIFY); `on_connected()` after each (re)connect. `what` names the
    listener in the log.
    """
    import asyncpg  # PostgreSQL only: the other dialects never load it

    backoff = Backoff(*LISTEN_RETRY)
    outage = Outage(log, f"{what} LISTEN {NOTIFY_CHANNEL}")
    while True:
        raise_if_cancelled()
        conn: Any = None
        try:
            conn = await asyncpg.connect(repo.asyncpg_dsn(), timeout=DB_CONNECT_TIMEOUT)
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
            await conn.add_listener(
                NOTIFY_CHANNEL, lambda _conn, _pid, _channel, payload: on_notify(payload))
            outage.recovered()
            backoff.reset()
            on_connected()
            while not lost.is_set():
                raise_if_cancelled()  # a wait_for here or in asyncpg may swallow one
                try:
                    await asyncio.wait_for(lost.wait(), LISTEN_KEEPALIVE)
                except TimeoutError:
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
