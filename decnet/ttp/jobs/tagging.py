"""The main job: stream log lines through the adapters and the engine, write JSONL tags.

Memory stays constant whatever the input size: input is read in blocks of whole lines
(`reading`), at most two blocks per process are in flight, and no line is held past
`MAX_EVENT_LINE_BYTES`. A malformed, over-long or unevaluable line is counted and
reported with its line number; it never stops the job.

With `jobs` > 1, worker processes (forked, so they share the loaded rules) decode,
map and match blocks (`chunks`); this process takes their results in input order,
completes Cowrie logins with their session's protocol, runs the cross-event rules
(`RuleEngine.correlate`) on every event in order and writes. The tags and their order
are those of `jobs=1`, which runs the same two steps in one process.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType
from typing import IO

from decnet.ttp.constants import MAX_EVENT_LINE_BYTES, TAG_BLOCKS_IN_FLIGHT_PER_WORKER
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event
from decnet.ttp.errors import TagJobError
from decnet.ttp.inputs import Mapper, SessionProtocols, mapper
from decnet.ttp.jobs.chunks import (
    BlockResult,
    Packed,
    pack,
    process_block,
    serialize,
    unpack,
)
from decnet.ttp.jobs.reading import BLOCK_BYTES, Block, blocks
from decnet.ttp.jobs.summary import MAX_REPORTED_BAD_LINES, TagSummary

__all__ = ["MAX_REPORTED_BAD_LINES", "TagJob", "TagSummary", "correlated_kinds", "default_jobs",
           "tag_stream"]


@dataclass(frozen=True, slots=True)
class _BlockStep:
    """`process_block` with the job's settings."""

    engine: RuleEngine
    map_record: Mapper
    max_line: int
    too_long: str
    correlated: frozenset[str] | None

    def __call__(self, block: Block) -> BlockResult:
        return process_block(self.engine, self.map_record, block, self.max_line,
                             self.too_long, self.correlated)


# The worker processes' view of the job, inherited through fork.
_WORKER: _BlockStep | None = None


def correlated_kinds(engine: RuleEngine) -> frozenset[str] | None:
    """The kinds of events the job hands `correlate`: the engine's `correlated_kinds`;
    every event (None) for an engine that does not declare them."""
    declared = getattr(engine, "correlated_kinds", None)
    return None if declared is None else frozenset(declared)


def default_jobs() -> int:
    """Every core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _size(limit: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


def _work(block: Block) -> Packed:
    assert _WORKER is not None
    return pack(_WORKER(block))


def _ready() -> None:
    """A no-op task: submitting it forks the worker processes."""


class TagJob:
    """Tags inputs in format `fmt` with `jobs` processes; a context manager.

    Enter it before any thread starts (a progress bar): the worker processes are forked
    on entry.

        with TagJob(engine, fmt="cowrie", jobs=2) as job:
            summary = job.run([("cowrie.json", stream)], sink)
    """

    def __init__(self, engine: RuleEngine, *, fmt: str = "native", jobs: int = 1,
                 max_line_bytes: int = MAX_EVENT_LINE_BYTES,
                 block_bytes: int = BLOCK_BYTES) -> None:
        self.engine = engine
        self.block_bytes = block_bytes
        self.jobs = max(1, jobs)
        self._step = _BlockStep(engine, mapper(fmt), max_line_bytes,
                                f"longer than {_size(max_line_bytes)}, skipped",
                                correlated_kinds(engine))
        self.max_line = max_line_bytes
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> TagJob:
        global _WORKER
        if self.jobs > 1:
            _WORKER = self._step
            self._pool = ProcessPoolExecutor(self.jobs,
                                             mp_context=multiprocessing.get_context("fork"))
            self._pool.submit(_ready).result()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        global _WORKER
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        _WORKER = None

    def run(self, inputs: Iterable[tuple[str, IO[bytes]]], sink: IO[bytes],
            progress: Callable[[int], None] | None = None) -> TagSummary:
        """Tag every line of every input, in order, writing tags to `sink`."""
        summary = TagSummary()
        started = time.perf_counter()
        writer = _Writer(self.engine, sink, summary)
        results = (self._parallel(inputs, summary, progress) if self._pool is not None
                   else self._serial(inputs, summary, progress))
        for result in results:
            writer.take(result)
        summary.seconds = time.perf_counter() - started
        return summary

    def _blocks(self, inputs: Iterable[tuple[str, IO[bytes]]], summary: TagSummary,
                progress: Callable[[int], None] | None) -> Iterator[Block]:
        for label, stream in inputs:
            for block, size in blocks(label, stream, self.max_line, self.block_bytes):
                summary.bytes_read += size
                if progress is not None and size:
                    progress(size)
                if block.data:
                    yield block

    def _serial(self, inputs: Iterable[tuple[str, IO[bytes]]], summary: TagSummary,
                progress: Callable[[int], None] | None) -> Iterator[BlockResult]:
        for block in self._blocks(inputs, summary, progress):
            yield self._step(block)

    def _parallel(self, inputs: Iterable[tuple[str, IO[bytes]]], summary: TagSummary,
                  progress: Callable[[int], None] | None) -> Iterator[BlockResult]:
        assert self._pool is not None
        pending: deque[Future[Packed]] = deque()
        bound = TAG_BLOCKS_IN_FLIGHT_PER_WORKER * self.jobs
        try:
            for block in self._blocks(inputs, summary, progress):
                pending.append(self._pool.submit(_work, block))
                if len(pending) >= bound:
                    yield unpack(pending.popleft().result())
            while pending:
                yield unpack(pending.popleft().result())
        except BrokenProcessPool as exc:
            raise TagJobError(f"a worker process died ({exc}); rerun with --jobs 1 to "
                              "tag in one process") from exc


class _Writer:
    """Takes block results in input order: the session table, the events the parent
    handles (cross-event rules, logins completed from an earlier block), output."""

    def __init__(self, engine: RuleEngine, sink: IO[bytes], summary: TagSummary) -> None:
        self.engine = engine
        self.sink = sink
        self.summary = summary
        self.sessions = SessionProtocols()

    def take(self, result: BlockResult) -> None:
        summary = self.summary
        label = result.label
        for number, reason in result.bad:
            summary.bad_line(label, number, reason)
        for kind, count in result.unknown.items():
            summary.unknown_kind(kind, count)
        counts = result.counts
        correlate = self.engine.correlate
        out: list[bytes] = []
        for item in result.items:
            if isinstance(item, bytes):
                out.append(item)
                continue
            number, fields, tags, lines = item
            event = Event(*fields)
            deferred = lines is None
            try:
                if deferred:
                    event = self.sessions.complete(event)
                    tags = self.engine.match(event)
                    lines = serialize(tags) if tags else b""
                extra = correlate(event, tags)
                if extra:
                    lines = (lines or b"") + serialize(extra)
            except Exception as exc:  # one bad event never costs another its tags
                summary.bad_line(label, number, f"event not evaluated ({type(exc).__name__})")
                if lines:
                    out.append(lines)  # its single-event tags stand
                if deferred:
                    counts.add(event, tags if lines else [])
                continue
            if lines:
                out.append(lines)
            if deferred:
                counts.add(event, tags + extra if extra else tags)
            elif extra:
                counts.add_tags(event, extra)
        for session, protocol in result.sessions:
            self.sessions.record(session, protocol)
        summary.merge(counts)
        if out:
            self.sink.write(b"".join(out))


def tag_stream(
    engine: RuleEngine,
    source: IO[bytes],
    sink: IO[bytes],
    progress: Callable[[int], None] | None = None,
    *,
    fmt: str = "native",
    max_line_bytes: int = MAX_EVENT_LINE_BYTES,
) -> TagSummary:
    """Evaluate every line of `source` (format `fmt`) in this process, writing one JSON
    tag per line to `sink`. A line longer than `max_line_bytes` is reported and skipped."""
    with TagJob(engine, fmt=fmt, jobs=1, max_line_bytes=max_line_bytes) as job:
        return job.run([("", source)], sink, progress)
