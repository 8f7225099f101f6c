"""`Backoff`, `Outage`, `cancel_and_wait` and `raise_if_cancelled`: what every
background loop shares."""

from __future__ import annotations

import asyncio
import logging

import pytest

from decnet.ttp.constants import EXPIRY_RETRY_INITIAL, EXPIRY_RETRY_MAX
from decnet.ttp.loops import Backoff, Outage, cancel_and_wait, raise_if_cancelled


def test_expiry_retries_back_off_from_one_second_to_thirty() -> None:
    backoff = Backoff(EXPIRY_RETRY_INITIAL, EXPIRY_RETRY_MAX)
    assert [backoff.peek(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_jitter_only_shortens_and_reset_starts_over() -> None:
    draws = iter([0.0, 1.0, 0.5])
    backoff = Backoff(1.0, 8.0, jitter=0.2, rand=lambda: next(draws))
    assert [backoff.failed(), backoff.failed(), backoff.failed()] == [1.0, 1.6, 3.6]
    backoff.reset()
    assert backoff.failures == 0 and backoff.peek(1) == 1.0


@pytest.mark.parametrize(("initial", "cap", "jitter"), [(0, 1, 0.1), (2, 1, 0.1), (1, 2, 1.0)])
def test_backoff_refuses_nonsense(initial: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, cap, jitter=jitter)


def test_an_outage_is_logged_once_then_its_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.outage")
    outage = Outage(logging.getLogger("test.outage"), "polling")
    assert not outage.recovered()
    for _ in range(3):
        outage.failed(OSError("down"), "keeping the rules")
    assert outage.recovered()
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.WARNING]
    assert "after 3 failure(s)" in caplog.records[-1].getMessage()


async def test_cancel_and_wait_stops_everything_and_reports_errors(
        caplog: pytest.LogCaptureFixture) -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup broke")

    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(forever()), loop.create_task(fails_on_cancel())]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks, None)
    assert all(task.done() for task in tasks)
    assert any("cleanup broke" in r.getMessage() for r in caplog.records)


async def test_a_cancel_swallowed_by_wait_for_still_stops_a_loop_that_checks() -> None:
    """Python 3.11's `wait_for` returns a result that lands with the cancel (nats-py's
    requests wait that way): the loop goes on, and `raise_if_cancelled` stops it."""
    answers: list[asyncio.Future[int]] = []
    waiting = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            raise_if_cancelled()
            rounds += 1
            answer = asyncio.get_running_loop().create_future()
            answers.append(answer)
            waiting.set()
            await asyncio.wait_for(answer, 5)

    task = asyncio.create_task(loop())
    await waiting.wait()
    answers[0].set_result(1)  # the answer and the cancel land in one loop iteration
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert rounds in (1, 2)  # 2 where wait_for swallowed the cancel (Python 3.11)


async def test_raise_if_cancelled_does_nothing_in_a_task_not_cancelled() -> None:
    raise_if_cancelled()
