"""Evaluation off the event loop, with a bound on the requests in progress.

Events are evaluated on one dedicated thread (the engine's cross-event state wants one
evaluator, in arrival order), so `/healthz` and `/metrics` are answered by the loop
while a flood of hostile events is evaluated: the loop only waits for the GIL, which
the evaluating thread gives up every switch interval (5 ms by default).

`Gate` admits at most `max_pending` requests at once, from reading their body to the
last byte of their response; one more is refused at once (503, Retry-After) rather
than queued without bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from decnet.swarm.http.batch import BatchOutcome, evaluate_body
from decnet.swarm.http.hits import TagHits, TagTally
from decnet.swarm.http.limits import HttpLimits
from decnet.ttp.engine.engine import RuleEngine


class Gate:
    """A counter of requests in progress that refuses rather than waits."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_progress = 0

    def try_enter(self) -> bool:
        if self.in_progress >= self.capacity:
            return False
        self.in_progress += 1
        return True

    def leave(self) -> None:
        self.in_progress -= 1


@dataclass(slots=True)
class EventStats:
    """Counts of `POST /events` outcomes, for `/metrics`."""

    requests: int = 0
    refused_busy: int = 0
    refused_media_type: int = 0
    event_errors: int = 0
    evaluation_failures: int = 0
    responses_truncated: int = 0
    tags_omitted: int = 0

    def record(self, outcome: BatchOutcome) -> None:
        self.requests += 1
        self.event_errors += len(outcome.errors)
        self.evaluation_failures += outcome.evaluation_failures
        if outcome.tags_omitted:
            self.responses_truncated += 1
            self.tags_omitted += outcome.tags_omitted


class Evaluator:
    """Runs `evaluate_body` on its own thread for the requests a `Gate` admitted, and
    counts their tags in `hits` there (one lock a request)."""

    def __init__(self, engine: Callable[[], RuleEngine], limits: HttpLimits,
                 hits: TagHits | None = None) -> None:
        self._engine = engine
        self.limits = limits
        self.hits = hits if hits is not None else TagHits()
        self.gate = Gate(limits.max_pending)
        self.stats = EventStats()
        self._executor: ThreadPoolExecutor | None = None
        #: 1 while the thread evaluates a body (read by `/metrics`, on the loop)
        self.evaluating = 0

    async def evaluate(self, body: bytes, log_format: str | None = None) -> BatchOutcome:
        """Evaluate one body off the loop; `log_format` reads it as honeypot log records."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1,
                                                thread_name_prefix="decnet-ttp-eval")
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self._executor, self._evaluate, body, log_format)
        self.stats.record(outcome)
        return outcome

    def _evaluate(self, body: bytes, log_format: str | None) -> BatchOutcome:
        self.evaluating = 1
        try:
            tally = TagTally()
            outcome = evaluate_body(self._engine(), body, self.limits, log_format, tally)
            self.hits.record(tally, time.time())
            return outcome
        finally:
            self.evaluating = 0

    def close(self) -> None:
        """Stop the thread once the evaluation in progress (if any) ends."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
