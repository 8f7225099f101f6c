"""Plumbing shared by the swarm processes: stop signals, announcements, addresses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import Any

import orjson

from decnet.ttp.errors import ConfigError
from decnet.ttp.loops import Backoff, Outage
from decnet.ttp.store.base import RuleStore

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: (first, longest) pause between attempts at opening a store whose database is away.
START_BACKOFF = (0.1, 2.0)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set `stop` (a clean shutdown); a second one exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)


def remove_stop_signals() -> None:
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.remove_signal_handler(signum)


def announce(event: str, **fields: Any) -> None:
    """One JSON line on stdout for whoever supervises this process (tests, scripts).

    Logs go to stderr; stdout carries only these lines.
    """
    sys.stdout.buffer.write(orjson.dumps({"event": event, **fields}) + b"\n")
    sys.stdout.flush()


def parse_host_port(value: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `:PORT` -> (host, port); port 0 picks a free one."""
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number in {value!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host or default_host, port


async def first_done(*tasks: asyncio.Task[Any]) -> asyncio.Task[Any]:
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    return next(iter(done))


async def start_store(store: RuleStore, stop: asyncio.Event) -> bool:
    """`store.start()`, retried with backoff until it works or `stop` is set.

    A `ConfigError` (a URL naming a driver this project does not ship...) can never heal:
    it is raised at once.
    """
    backoff = Backoff(*START_BACKOFF)
    outage = Outage(log, "opening the store")
    while not stop.is_set():
        try:
            await store.start()
            outage.recovered()
            return True
        except ConfigError:
            raise
        except Exception as exc:
            outage.failed(exc, "retrying with a backoff")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.failed())
    return False
