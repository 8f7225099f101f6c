"""A failure that repeats is logged once per interval, with a count, never per occurrence.

An attacker who can trigger a warning (a malformed request, a full file table) must not
be able to fill a disk or drown the log: `RepeatFilter` lets the first record of a kind
through, drops the same kind for `interval` seconds, and the next one it lets through
says how many were dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from decnet.ttp.constants import REPEAT_LOG_INTERVAL

#: Kinds of records remembered at most; past it the oldest half is forgotten.
_MAX_KINDS = 1024


class RepeatFilter(logging.Filter):
    """Thins WARNING and above to one record per kind (logger, level, message template,
    exception type) per `interval`; INFO and below pass untouched."""

    def __init__(self, interval: float = REPEAT_LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[Any, ...], tuple[float, int]] = {}
        self.suppressed = 0
        self._mark = f"_repeat_filter_{id(self)}"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        verdict = record.__dict__.get(self._mark)
        if verdict is None:  # one decision per record, however many handlers carry us
            verdict = record.__dict__[self._mark] = self._decide(record)
        return bool(verdict)

    def _decide(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0] if record.exc_info else None
        kind = (record.name, record.levelno, str(record.msg), exc_type)
        now = self.clock()
        last, dropped = self._seen.get(kind, (float("-inf"), 0))
        if now - last < self.interval:
            self._seen[kind] = (last, dropped + 1)
            self.suppressed += 1
            return False
        if len(self._seen) >= _MAX_KINDS:
            for old in list(self._seen)[: _MAX_KINDS // 2]:
                del self._seen[old]
        self._seen[kind] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} more like this in the last " \
                         f"{now - last:.0f}s]"
        return True


#: Loggers whose handlers carry the filter: the root, and uvicorn's in case a
#: configuration gave them handlers of their own.
THINNED_LOGGERS = ("", "uvicorn", "uvicorn.error")


def install(filter_: RepeatFilter) -> Callable[[], None]:
    """Put `filter_` on every handler of `THINNED_LOGGERS`; returns its removal."""
    handlers = {handler for name in THINNED_LOGGERS
                for handler in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(filter_)

    def remove() -> None:
        for handler in handlers:
            handler.removeFilter(filter_)

    return remove


def loop_exception_handler(logger: logging.Logger) -> Callable[
        [asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler that logs through `logger` (so through the
    filters), e.g. `socket.accept() out of system resource` at the file limit."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "event loop error")
        if isinstance(exc, BaseException):
            logger.error("%s: %s", message, type(exc).__name__,
                         exc_info=(type(exc), exc, exc.__traceback__))
        else:
            logger.error("%s", message)

    return handle
