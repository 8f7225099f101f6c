"""The swarm worker: a `DatabaseRuleStore` tailing the database, a `RuleEngine`
following it, and the HTTP API (see `decnet.swarm.http_api`).

Start-up order: the HTTP socket is bound first (`/healthz` answers 503 while
loading), then the store is opened, retried while the database is away, then the
tail and the engine follower run until SIGTERM/SIGINT.

The HTTP server runs with `HttpLimits` (connections capped below the open-file limit,
read/write/idle timeouts by `decnet.swarm.http.protocol`). While it runs, a warning
that repeats is logged once per interval with a count (`RepeatFilter`), and the GIL
switch interval is shortened so that the loop answers while events are evaluated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from decnet.swarm.http import repeats
from decnet.swarm.http.limits import HttpLimits
from decnet.swarm.http.protocol import ConnectionGuard
from decnet.swarm.http_api import create_app
from decnet.swarm.live import LiveRules
from decnet.swarm.process import (
    announce,
    first_done,
    install_stop_signals,
    remove_stop_signals,
    start_store,
)
from decnet.ttp.constants import (
    ACCEPT_BACKLOG,
    FLEET_REPORT_INTERVAL,
    NATS_DEFAULT_PREFIX,
    NATS_SAFETY_POLL_INTERVAL,
    WORKER_SWITCH_INTERVAL,
)
from decnet.ttp.errors import ListenError
from decnet.ttp.loops import cancel_and_wait
from decnet.ttp.store.base import RuleStore
from decnet.ttp.store.factory import database_store

log = logging.getLogger(__name__)


#: Runs the store's tail (or whatever keeps it current) until cancelled.
Tail = Callable[[RuleStore], Coroutine[Any, Any, None]]
#: Reports what the worker runs (its live view and HTTP URL) until cancelled.
Reporter = Callable[[LiveRules, str], Coroutine[Any, Any, None]]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the worker owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port`; `ListenError` (one readable line) when it cannot be."""
    where = f"{_url_host(host)}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise ListenError(f"--http {where}: cannot resolve {host!r}: {reason}") from None
    family, _, _, _, address = infos[0]
    try:
        sock = socket.create_server(address, family=family, backlog=ACCEPT_BACKLOG)
    except OSError as exc:
        raise ListenError(f"--http {where}: cannot listen: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def run_worker(
    store: RuleStore,
    *,
    host: str,
    port: int,
    tail: Tail | None,
    stop: asyncio.Event | None = None,
    limits: HttpLimits | None = None,
    reporter: Reporter | None = None,
) -> int:
    """Serve until `stop` is set (or SIGTERM/SIGINT when `stop` is None); the exit code."""
    limits = (limits or HttpLimits()).within_fd_limit()
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
        install_stop_signals(stop)
    live = LiveRules(store)
    guard = ConnectionGuard(limits)
    app = create_app(live, limits=limits, guard=guard)
    # log_config=None: uvicorn's records go to this process's handlers and filters
    server = _Server(uvicorn.Config(app, http=guard.protocol_class(), lifespan="off",
                                    log_config=None, log_level="warning", access_log=False,
                                    backlog=ACCEPT_BACKLOG, timeout_graceful_shutdown=5))
    loop = asyncio.get_running_loop()
    thinning = repeats.RepeatFilter()
    unfilter = repeats.install(thinning)
    previous_handler = loop.get_exception_handler()
    previous_switch = sys.getswitchinterval()
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL)
    loop.set_exception_handler(repeats.loop_exception_handler(log))
    http_task = loop.create_task(server.serve(sockets=[sock]), name="http")
    tail_task: asyncio.Task[None] | None = None
    follow_task: asyncio.Task[None] | None = None
    report_task: asyncio.Task[None] | None = None
    stop_task = loop.create_task(stop.wait(), name="stop")
    started: asyncio.Task[bool] | None = None
    ready_task: asyncio.Task[None] | None = None
    code = 1
    url = f"http://{_url_host(bound_host)}:{bound_port}"
    try:
        announce("listening", url=url, host=bound_host, port=bound_port)
        started = loop.create_task(start_store(store, stop), name="start")
        await first_done(started, http_task)
        if started.done() and started.result():
            follow_task = loop.create_task(live.run(), name="follow")
            if tail is not None:
                tail_task = loop.create_task(tail(store), name="tail")
            ready_task = loop.create_task(live.wait_ready(), name="ready")
            tasks = [t for t in (http_task, follow_task, tail_task, stop_task) if t is not None]
            if await first_done(ready_task, *tasks) is ready_task:
                announce("ready", rules=len(live.engine.rules), revision=live.revision)
                if reporter is not None:
                    report_task = loop.create_task(reporter(live, url), name="report")
                await first_done(*tasks)
        code = 0 if stop.is_set() else 1
        if code:
            _report_unexpected(http_task, follow_task, tail_task)
        return code
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(http_task), 5)
        await cancel_and_wait(started, ready_task, http_task, follow_task, tail_task, stop_task,
                              report_task, logger=log)
        app.state.evaluator.close()
        with contextlib.suppress(Exception):
            await store.stop()
        sock.close()
        if own_signals:
            remove_stop_signals()
        loop.set_exception_handler(previous_handler)
        sys.setswitchinterval(previous_switch)
        unfilter()
        announce("stopped", code=code)


def _report_unexpected(*tasks: asyncio.Task[None] | None) -> None:
    """Log which task ended on its own (crashed, or returned when it should not)."""
    for task in tasks:
        if task is not None and task.done():
            failure = None if task.cancelled() else task.exception()
            log.error("%s ended unexpectedly: %r", task.get_name(), failure)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def database_tail(poll_interval: float, *, listen: bool = True,
                  nats: NatsOptions | None = None) -> Tail:
    """The tail of a `DatabaseRuleStore`: poll (and on PostgreSQL listen) forever.

    `listen=False` polls only, also on PostgreSQL (a pooler in transaction mode,
    such as PgBouncer, cannot carry LISTEN; benchmarks of the poll alone). With `nats`,
    changes arrive through the JetStream change stream and the database is polled every
    `nats.safety_poll` seconds while it flows (every `poll_interval` while it does not).
    """
    from decnet.ttp.store.database import DatabaseRuleStore  # SQLAlchemy: database runs only
    from decnet.ttp.store.database.feed import ChangeFeed
    from decnet.ttp.store.database.jetstream import NatsNames

    async def tail(store: RuleStore) -> None:
        assert isinstance(store, DatabaseRuleStore)
        feed = None if nats is None else ChangeFeed(nats.url, NatsNames(nats.prefix))
        await store.tail_db(poll_interval, listen=listen, feed=feed,
                            feed_poll_interval=None if nats is None else nats.safety_poll)

    return tail


@dataclass(frozen=True, slots=True)
class NatsOptions:
    """A worker's NATS settings: server URL, name prefix, safety-net poll, report interval."""

    url: str
    prefix: str = NATS_DEFAULT_PREFIX
    safety_poll: float = NATS_SAFETY_POLL_INTERVAL
    report_interval: float = FLEET_REPORT_INTERVAL
    worker_id: str | None = None


def fleet_reporter(nats: NatsOptions) -> Reporter:
    """Reports to the fleet bucket every `nats.report_interval` seconds."""
    from decnet.swarm.fleet import report_loop
    from decnet.ttp.store.database.jetstream import NatsNames

    async def reporter(live: LiveRules, url: str) -> None:
        worker_id = nats.worker_id or f"{socket.gethostname()}-{url.rsplit(':', 1)[-1]}"
        await report_loop(live, nats.url, NatsNames(nats.prefix), worker_id=worker_id,
                          http=url, interval=nats.report_interval)

    return reporter


async def main_async(db_url: str, host: str, port: int, poll_interval: float, *,
                     listen: bool = True, limits: HttpLimits | None = None,
                     nats: NatsOptions | None = None) -> int:
    store = database_store(db_url)
    return await run_worker(store, host=host, port=port, limits=limits,
                            tail=database_tail(poll_interval, listen=listen, nats=nats),
                            reporter=None if nats is None else fleet_reporter(nats))
