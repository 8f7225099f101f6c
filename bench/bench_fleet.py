"""A fleet simulation: many lightweight workers (a `DatabaseRuleStore` tail each, many per
process, a few processes) against one PostgreSQL and one NATS.

The parent creates a database of its own, seeds it, runs the publisher and the head
beacon (what the master holding the lease runs) and starts child processes, each with
its share of simulated workers. Per fleet size it measures: `state set` → every worker
applied (p50/p99/max), PostgreSQL transactions and tuples read per change
(`pg_stat_database`; the fleet's idle rate, measured over a longer window before, shown
beside), the idle rate itself, NATS deliveries per change, the catch-up time of one
worker and of 100 workers offline across 50 changes (with the database statements their
process issued meanwhile), and memory per simulated worker. With NATS off (tails
polling, LISTEN on PostgreSQL) the same at small sizes, for contrast.

Run: python -m bench.bench_fleet [--sizes 10,100,1000] [--changes 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench.bench_swarm import pg_database
from bench.synthetic import percentile
from decnet.ttp.store.base import STATE, RuleState, StateName
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.database.beacon import HeadBeacon
from decnet.ttp.store.database.feed import ChangeFeed
from decnet.ttp.store.database.jetstream import ChangePublisher, NatsNames
from decnet.ttp.store.sql import migrate
from decnet.ttp.store.sql.repository import RuleRepository
from tests.ttp.store.helpers import seed

COMMAND = "python -m bench.bench_fleet"
NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
RULES = 20
MARKER = "B0000"
#: Simulated workers per child process at most.
PER_PROCESS = 250
#: Seconds PostgreSQL may take to publish a backend's counters (PGSTAT_IDLE_INTERVAL), and more.
FLUSH_LAG = 11.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# child: the simulated workers ------------------------------------------------------------

async def child(url: str, prefix: str | None, count: int, poll: float) -> None:
    """Run `count` workers; print `ready`, then one line per marker change all applied.

    stdin commands: `pause K` stops the tails of the first K workers, `resume` starts
    them again (the catch-up measurement); `stats` prints counters.
    """
    base_rss = rss_kb()
    repo = RuleRepository(url)
    names = None if prefix is None else NatsNames(prefix)
    stores: list[DatabaseRuleStore] = []
    seen: dict[str, list[float]] = {}
    loop = asyncio.get_running_loop()

    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(event), flush=True)

    async def follow(store: DatabaseRuleStore) -> None:
        async for change in store.subscribe_changes():
            if change.change_kind == STATE and change.rule_id == MARKER:
                assert isinstance(change.new_value, RuleState)
                token = change.new_value.reason or ""
                times = seen.setdefault(token, [])
                times.append(time.time())
                if len(times) == count:
                    emit({"event": "applied", "token": token, "first": min(times),
                          "last": max(times)})

    feeds: list[ChangeFeed | None] = []
    followers = []

    def start_tail(store: DatabaseRuleStore, feed: ChangeFeed | None) -> None:
        store.start_tail(poll, listen=feed is None, feed=feed, feed_poll_interval=30.0)

    for _ in range(count):
        store = DatabaseRuleStore(repo)
        await store.start()
        feed = None if names is None else ChangeFeed(NATS_URL, names)
        stores.append(store)
        feeds.append(feed)
        followers.append(loop.create_task(follow(store)))
        start_tail(store, feed)
    # ready once every feed is followed and vouched for by the head beacon
    while any(f is not None and not f.vouched() for f in feeds):  # noqa: ASYNC110 (a poll)
        await asyncio.sleep(0.05)
    emit({"event": "ready", "rss_kb": rss_kb() - base_rss})
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        verb, _, arg = line.partition(" ")
        if verb == "pause":
            for store in stores[:int(arg)]:  # its tail stops; its view stays
                task, store._tail_task = store._tail_task, None
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            emit({"event": "paused"})
        elif verb == "resume":
            for store in stores:
                if store._tail_task is None:
                    start_tail(store, None if names is None else ChangeFeed(NATS_URL, names))
            emit({"event": "resumed"})
        elif verb == "stats":
            live = [s.tail.feed for s in stores if s.tail.feed is not None]
            emit({"event": "stats", "received": sum(f.stats.received for f in live),
                  "statements": repo.statements,
                  "stream_resumes": sum(f.stats.stream_resumes for f in live),
                  "database_resumes": sum(f.stats.database_resumes for f in live),
                  "beacon_reads": sum(f.stats.beacon_reads for f in live),
                  "vouched": sum(f.vouched() for f in live),
                  "pushed": sum(s.tail.stats.pushed for s in stores),
                  "polls": sum(s.tail.stats.polls for s in stores),
                  "gaps": sum(s.tail.stats.push_gaps for s in stores),
                  "notifications": sum(s.tail.stats.notifications for s in stores),
                  "outages": sum(f.stats.outages for f in live),
                  "resyncs": sum(s.tail.stats.resyncs for s in stores)})


# parent ------------------------------------------------------------------------------

@dataclass
class Child:
    process: asyncio.subprocess.Process
    count: int
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.events.put_nowait(json.loads(raw))

    async def expect(self, event: str, timeout: float = 120.0) -> dict[str, Any]:
        while True:
            got = await asyncio.wait_for(self.events.get(), timeout)
            if got["event"] == event:
                return got

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()


async def pg_counters(url: str) -> tuple[int, int, int, int, int]:
    parsed = make_url(url)
    conn = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                                 password=parsed.password, database=parsed.database)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(
            "SELECT xact_commit + xact_rollback AS x, tup_returned + tup_fetched AS t, "
            "(SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) "
            " FROM pg_stat_user_tables) AS a, xact_rollback AS r, sessions AS s "
            "FROM pg_stat_database WHERE datname = current_database()")
        assert row is not None
        return int(row["x"]), int(row["t"]), int(row["a"]), int(row["r"]), int(row["s"])
    finally:
        await conn.close()


@dataclass
class CatchUp:
    offline: int
    seconds: float
    #: Database statements the offline workers' process issued while they caught up.
    statements: int
    #: Reconnections that resumed from the stream / read the database.
    from_stream: int
    from_database: int


@dataclass
class Result:
    label: str
    workers: int
    processes: int
    p50: float
    p99: float
    worst: float
    xact_per_change: float
    idle_xact_per_change: float
    idle_xact_per_s: float
    tuples_per_change: float
    lease_holder_statements_per_change: float
    worker_statements_per_change: float
    deliveries_per_change: float | None
    catch_up_one: CatchUp
    catch_up_many: CatchUp
    kb_per_worker: float
    load: str


async def fleet_run(workers: int, *, nats: bool, changes: int, settle: float,
                    idle_window: float) -> Result:
    async with pg_database() as url:
        await migrate.upgrade(url)
        writer = DatabaseRuleStore(url)
        await writer.start()
        for n in range(RULES):
            await seed(writer, f"B{n:04d}")
        prefix = f"bench{uuid.uuid4().hex[:8]}" if nats else None
        lease_holder: list[asyncio.Task[None]] = []
        if prefix is not None:
            names = NatsNames(prefix)
            lease_holder = [
                asyncio.create_task(ChangePublisher(writer.repo, NATS_URL, names).run()),
                asyncio.create_task(HeadBeacon(writer.repo, NATS_URL, names).run())]
        processes = max(1, -(-workers // PER_PROCESS))
        shares = [workers // processes + (1 if i < workers % processes else 0)
                  for i in range(processes)]
        children = []
        for share in shares:
            argv = [sys.executable, "-m", "bench.bench_fleet", "--child", url,
                    "--prefix", prefix or "-", "--count", str(share)]
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            children.append(Child(proc, share))
        readers = [asyncio.create_task(c.read()) for c in children]
        try:
            ready = [await c.expect("ready", timeout=300) for c in children]
            kb_per_worker = sum(r["rss_kb"] for r in ready) / workers
            # PostgreSQL backends report their counters lazily: let the start-up's settle
            await asyncio.sleep(settle)
            idle0 = await pg_counters(url)
            await asyncio.sleep(idle_window)
            idle1 = await pg_counters(url)
            stats0 = [await _stats(c) for c in children]
            before = await pg_counters(url)
            parent_before = writer.repo.statements
            started = time.monotonic()
            latencies = []
            for n in range(changes):
                token = f"c{n}"
                at = time.time()
                await writer.set_state(MARKER, marker_state(n, token), "b")
                lasts = [await c.expect("applied", timeout=60) for c in children]
                latencies.append(max(event["last"] for event in lasts) - at)
                await asyncio.sleep(max(0.0, started + (n + 1) * 0.1 - time.monotonic()))
            stats1 = [await _stats(c) for c in children]
            lease_holder_statements = (writer.repo.statements - parent_before) / changes
            # a backend flushes its counters up to 10 s after it went idle: wait as long
            # again, so both ends of the measurement lag the same steady idle load
            await asyncio.sleep(FLUSH_LAG)
            after = await pg_counters(url)
            elapsed = time.monotonic() - started
            idle_xps = (idle1[0] - idle0[0]) / idle_window
            xact = (after[0] - before[0]) / changes
            tuples = (after[1] - before[1]) / changes
            idle_per_change = idle_xps * elapsed / changes

            def delta(key: str) -> int:
                return sum(s[key] for s in stats1) - sum(s[key] for s in stats0)

            worker_statements = delta("statements") / changes
            idle2 = await pg_counters(url)
            await asyncio.sleep(idle_window)
            idle3 = await pg_counters(url)
            log(f"idle PG xact/s before {(idle1[0] - idle0[0]) / idle_window:.2f}, after "
                f"{(idle3[0] - idle2[0]) / idle_window:.2f}")
            log(f"autovacuum/autoanalyze runs: {idle1[2] - idle0[2]} in the idle window, "
                f"{after[2] - before[2]} over the changes; over the changes, rollbacks "
                f"{after[3] - before[3]}, new sessions {after[4] - before[4]} (idle window: "
                f"{idle1[3] - idle0[3]}, {idle1[4] - idle0[4]})")
            log(f"during the changes: NATS outages {delta('outages')}, resyncs "
                f"{delta('resyncs')}, gaps {delta('gaps')}, polls {delta('polls')}, "
                f"beacon reads {delta('beacon_reads')}, worker statements "
                f"{delta('statements')}, vouched {sum(s['vouched'] for s in stats1)}")
            deliveries = None
            if nats:
                deliveries = delta("received") / changes
            one = await _catch_up(writer, children[0], 1, "one")
            many = await _catch_up(writer, children[0], min(100, children[0].count), "many")
        finally:
            for c in children:
                if c.process.returncode is None:
                    c.process.kill()
                    await c.process.wait()
            for r in readers:
                r.cancel()
            for task in lease_holder:
                task.cancel()
            await asyncio.gather(*lease_holder, return_exceptions=True)
            await writer.stop()
            await writer.repo.dispose()
        latencies.sort()
        return Result("NATS" if nats else "database only", workers, len(children),
                      percentile(latencies, 50), percentile(latencies, 99), latencies[-1],
                      xact, idle_per_change, idle_xps, tuples, lease_holder_statements,
                      worker_statements, deliveries,
                      one, many, kb_per_worker, load_average())


def load_average() -> str:
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def marker_state(n: int, token: str) -> RuleState:
    """A state unlike the previous one (`token` in its reason): disabled, then clipped."""
    if n % 2 == 0:
        return RuleState(StateName.DISABLED, reason=token)
    return RuleState(StateName.CLIPPED, confidence_max=0.5, reason=token)


async def _stats(c: Child) -> dict[str, Any]:
    await c.send("stats")
    return await c.expect("stats")


async def _catch_up(writer: DatabaseRuleStore, child: Child, offline: int, tag: str,
                    offline_changes: int = 50) -> CatchUp:
    """`offline` workers (the child's first ones) go offline across 50 changes while
    the others apply them: seconds from their restart to all of them having applied the
    last change, and what their process read from the database meanwhile."""
    await child.send(f"pause {offline}")
    await child.expect("paused")
    for n in range(offline_changes):
        await writer.set_state(MARKER, marker_state(n, f"{tag}{n}"), "b")
    last = f"{tag}{offline_changes - 1}"
    # let the online workers apply them (their process reports a token once all its
    # workers have it, so only the restart completes `last`)
    await asyncio.sleep(1.0)
    before = await _stats(child)
    started = time.time()
    await child.send("resume")
    while True:
        event = await child.expect("applied", timeout=60)
        if event["token"] == last:
            seconds = float(event["last"] - started)
            break
    after = await _stats(child)
    return CatchUp(offline, seconds, after["statements"] - before["statements"],
                   after["stream_resumes"] - before["stream_resumes"],
                   after["database_resumes"] - before["database_resumes"])


def ms(value: float) -> str:
    return f"{value * 1000:,.0f} ms" if value >= 0.01 else f"{value * 1000:.1f} ms"


def catch_up_cell(c: CatchUp) -> str:
    return f"{ms(c.seconds)} ({c.statements})"


def table(results: list[Result]) -> str:
    lines = ["| feed | workers (processes) | load avg | p50 | p99 | max | PG xact / change "
             "(idle share) | PG xact / s idle | PG tuples / change | writer and lease holder "
             "statements / change | worker DB statements / change | NATS deliveries / "
             "change | catch-up: 1 worker (DB statements) | "
             "catch-up: ≤ 100 together (DB statements) | RSS / worker |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.label} | {r.workers:,} ({r.processes}) | {r.load} | {ms(r.p50)} | "
            f"{ms(r.p99)} | {ms(r.worst)} | {r.xact_per_change:.1f} "
            f"({r.idle_xact_per_change:.1f}) | {r.idle_xact_per_s:.1f} | "
            f"{r.tuples_per_change:.0f} | {r.lease_holder_statements_per_change:.2f} | "
            f"{r.worker_statements_per_change:.2f} | "
            f"{'-' if r.deliveries_per_change is None else f'{r.deliveries_per_change:,.0f}'}"
            f" | {catch_up_cell(r.catch_up_one)} | "
            f"{r.catch_up_many.offline}: {catch_up_cell(r.catch_up_many)} | "
            f"{r.kb_per_worker:.0f} KB |")
    return "\n".join(lines)


def flatness(results: list[Result]) -> str:
    """Per-change transactions through NATS, idle share removed, largest over smallest."""
    nats = [r for r in results if r.label == "NATS"]
    if len(nats) < 2:
        return ""
    net = [r.xact_per_change - r.idle_xact_per_change for r in nats]
    spread = max(net) / max(min(net), 1e-9)
    figures = " / ".join(f"{v:.2f}" for v in net)
    sizes = " / ".join(f"{r.workers:,}" for r in nats)
    return (f"Through NATS, PG transactions per change with the idle share removed: "
            f"{figures} at {sizes} workers (largest / smallest {spread:.2f}).\n")


async def parent(sizes: list[int], off_sizes: list[int], changes: int,
                 settle: float, idle_window: float) -> None:
    results = []
    for size in sizes:
        log(f"fleet of {size} through NATS ...")
        results.append(await fleet_run(size, nats=True, changes=changes, settle=settle,
                                       idle_window=idle_window))
        log(table(results[-1:]))
    for size in off_sizes:
        log(f"fleet of {size} without NATS ...")
        results.append(await fleet_run(size, nats=False, changes=changes, settle=settle,
                                       idle_window=idle_window))
        log(table(results[-1:]))
    print("### Fleet through NATS\n")
    print(f"`{COMMAND}` — simulated workers are real `DatabaseRuleStore` tails with a "
          f"`ChangeFeed` each, in child processes (≤ {PER_PROCESS} per process, one NATS "
          "connection each, the process's PostgreSQL pool shared), against one PostgreSQL "
          "and one NATS; the publisher and the head beacon run in the parent, as the lease "
          f"holder would. {changes} `state set` per size at 10/s; latency is from before "
          "the write to the last worker's apply (wall clock, one host). PG figures are "
          "`pg_stat_database` deltas (this database, every client) over the changes, "
          f"and the {FLUSH_LAG:.0f} s after them (PostgreSQL publishes a backend's counters "
          "lazily), divided by their number; in brackets, the share of it the fleet's idle "
          f"rate accounts for (that rate, measured over {idle_window:.0f} s before the "
          "changes, is the next column); the server is shared, and other clients' sessions "
          "in this database (tools listing every database) show in them. Statements are "
          "counted by the clients themselves: the writer, publisher and beacon in the "
          "parent (idle ones included) and the simulated workers' processes. Catch-up: "
          "workers offline (tail and NATS connection stopped) "
          "across 50 changes while the others apply them, from their restart to the last "
          "change applied by all of them; in brackets, the database statements their "
          "process issued meanwhile. Without NATS every worker tails with LISTEN and a 1 s "
          "poll. Load average (1/5/15 min) at the end of each size.\n")
    print(table(results))
    print()
    print(flatness(results))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--prefix")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--off-sizes", default="10,50")
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds between the fleet's start and the measurements")
    parser.add_argument("--idle-window", type=float, default=20.0,
                        help="seconds over which the fleet's idle rate is measured")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],
                                                resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    if args.child:
        prefix = None if args.prefix == "-" else args.prefix
        asyncio.run(child(args.child, prefix, args.count, 1.0))
        return
    asyncio.run(parent([int(s) for s in args.sizes.split(",") if s],
                       [int(s) for s in args.off_sizes.split(",") if s], args.changes,
                       args.settle, args.idle_window))


if __name__ == "__main__":
    main()
