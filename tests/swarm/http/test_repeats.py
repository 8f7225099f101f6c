"""A warning that repeats is logged once per interval with a count."""

from __future__ import annotations

import logging

import pytest

from decnet.swarm.http.repeats import RepeatFilter, install


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_interval_and_the_next_carries_the_count(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    thinning = RepeatFilter(interval=60, clock=clock)
    remove = install(thinning)
    caplog.handler.addFilter(thinning)
    log = logging.getLogger("test.repeats")
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(10_000):
                log.warning("accept failed: %s", "EMFILE")
            log.warning("another kind of failure")
            log.info("informational lines pass: %d", 1)
            log.info("informational lines pass: %d", 2)
            clock.now = 61
            log.warning("accept failed: %s", "EMFILE")
    finally:
        remove()
        caplog.handler.removeFilter(thinning)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "accept failed: EMFILE",
        "another kind of failure",
        "informational lines pass: 1",
        "informational lines pass: 2",
        "accept failed: EMFILE [9999 more like this in the last 61s]",
    ]
    assert thinning.suppressed == 9999


def test_exception_types_are_kinds_of_their_own(caplog: pytest.LogCaptureFixture) -> None:
    thinning = RepeatFilter(interval=60, clock=Clock())
    caplog.handler.addFilter(thinning)
    log = logging.getLogger("test.repeats.exc")
    try:
        for error in (OSError, OSError, ValueError):
            try:
                raise error("x")
            except Exception:
                log.error("failed: %s", "x", exc_info=True)
    finally:
        caplog.handler.removeFilter(thinning)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [OSError, ValueError]
