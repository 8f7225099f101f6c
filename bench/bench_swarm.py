"""Swarm propagation on PostgreSQL, with real master and worker processes.

- A file saved on the master -> applied by every worker's engine, and `set_state`
  -> every worker: p50/p99, with LISTEN/NOTIFY (poll 1 s as the safety net) and
  polling only (`--no-listen`) at 1 s and 100 ms.
- Database cost of an idle worker (SQL statements per poll interval, counted by the
  worker; transactions the server saw), and the cost of the idle query with 10 and
  10,000 rules stored.
- 16 workers: propagation to all of them, idle cost per worker.
- A cut database connection: time from the database being reachable again to every
  worker agreeing with it.

How "applied" is observed: each worker stamps `applied_at` (wall clock, this host)
on a rule when its engine applies the rule's change; the benchmark reads it back
through `GET /rules/{id}` after the fact, so how often it looks does not change the
figure. The start time is taken just before the save (or the `set_state` call), and
a random pause before each sample keeps the saves from locking onto the poll phase.

With `--nats [URL]`: the fleet through NATS JetStream instead. For each database
(PostgreSQL, SQLite file, MariaDB) and worker count, a master and real workers with
`--nats` propagate saved files and `set_state` calls (p50/p99/max to the last worker;
with NATS each call is followed by the commit hint `state set --nats` sends, timed with
it), and the same swarm without NATS (LISTEN on PostgreSQL, polling elsewhere) in the same
run, for contrast. Every stream the run makes is named by `--nats-prefix` (unique per
run by default) and deleted afterwards.

Run: python -m bench.bench_swarm [--quick] [--nats [URL] [--databases ...] [--workers ...]]
Needs PostgreSQL (DECNET_TTP_TEST_POSTGRES_URL, default
postgresql+asyncpg://postgres@127.0.0.1:5432/test); a database of its own is created
and dropped (with `--nats`, MariaDB too: DECNET_TTP_TEST_MARIADB_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import insert, update
from sqlalchemy.engine import make_url

from bench.synthetic import percentile
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql.models import ChangeLogRow, RevisionRow, RuleRow
from decnet.ttp.store.sql.repository import RuleRepository
from tests.swarm.databases import DATABASES
from tests.swarm.harness import ProcessGroup, run_cli
from tests.swarm.scenario import initial_rules, rule_yaml, seed_directory, write_rule
from tests.swarm.swarm import Swarm, Worker
from tests.tcp_proxy import TcpProxy

COMMAND = "python -m bench.bench_swarm"
POSTGRES_URL = os.environ.get(
    "DECNET_TTP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
RULES = 20
#: How often the benchmark asks a worker whether it has applied a change yet.
LOOK_INTERVAL = 0.025
#: When it first asks (the figure is the worker's own stamp: asking later changes nothing).
FIRST_LOOK = 0.03


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    url = make_url(POSTGRES_URL)
    name = f"bench_swarm_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username,
                                      password=url.password, database=url.database)
    except OSError as exc:
        raise SystemExit(f"PostgreSQL not reachable at {url.host}:{url.port}: {exc}") from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def applied_at(worker: Worker, rule_id: str, ok: Callable[[dict[str, Any]], bool],
                     timeout: float = 15.0) -> float:
    """The worker's own `applied_at` of `rule_id`, once `ok(entry)` holds."""
    assert worker.client is not None
    deadline = time.monotonic() + timeout
    # most changes have arrived by the first look: 16 workers asked every 25 ms from
    # the start would load the machine the workers share
    await asyncio.sleep(FIRST_LOOK)
    while True:
        response = await worker.client.get(f"/rules/{rule_id}")
        if response.status_code == 200:
            entry = response.json()
            if ok(entry):
                return float(entry["applied_at"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"{worker.name} never applied {rule_id}")
        # Looking often would only load the workers (and skew the figure): the
        # worker's own stamp is the measurement, this loop just collects it.
        await asyncio.sleep(LOOK_INTERVAL)


async def everywhere(workers: Sequence[Worker], rule_id: str,
                     ok: Callable[[dict[str, Any]], bool]) -> tuple[float, float]:
    """When the first and the last of `workers` applied the change."""
    stamps = await asyncio.gather(*(applied_at(w, rule_id, ok) for w in workers))
    return min(stamps), max(stamps)


@dataclass
class Latencies:
    file: list[float]
    state: list[float]
    #: the same samples split at the database row's stamp (`updated_at` / `set_at`,
    #: taken by the writer just before its commit):
    #: (save -> stored, stored -> first worker applied, stored -> last worker applied)
    file_split: list[tuple[float, float, float]]
    state_split: list[tuple[float, float, float]]


class Sampler:
    """Edits that never repeat a text, so every sample is a real change."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.count = 0

    def next_edit(self) -> tuple[str, str]:
        self.count += 1
        rule_id = f"S{self.count % RULES:04d}"
        self.versions[rule_id] = self.versions.get(rule_id, 1) + 1
        return rule_id, rule_yaml(rule_id, self.versions[rule_id], self.count)


async def measure(swarm: Swarm, workers: Sequence[Worker], writer: DatabaseRuleStore,
                  sampler: Sampler, *, samples: int, jitter: float, seed: int,
                  hint: Callable[[], Awaitable[object]] | None = None) -> Latencies:
    """`hint`, when given, runs right after each `set_state` (and is timed with it): the
    commit hint `decnet-ttp state set --nats` sends."""
    rng = random.Random(seed)
    lat = Latencies([], [], [], [])
    for i in range(samples):
        rule_id, text = sampler.next_edit()
        digest = hashlib.sha256(text.encode()).hexdigest()
        await asyncio.sleep(rng.uniform(0, jitter))
        start = time.time()
        write_rule(swarm.rules_dir, rule_id, text)
        first, done = await everywhere(workers, rule_id,
                                       lambda e, d=digest: e["yaml_sha256"] == d)
        lat.file.append(done - start)
        stored = (await writer.repo.snapshot()).rules
        stamp = next(r.updated_at for r in stored if r.rule_id == rule_id).timestamp()
        lat.file_split.append((stamp - start, first - stamp, done - stamp))

        marker = f"bench {seed}/{i}"
        await asyncio.sleep(rng.uniform(0, jitter))
        start = time.time()
        await writer.set_state(rule_id, RuleState(StateName.DISABLED, reason=marker), "bench")
        if hint is not None:
            await hint()
        first, done = await everywhere(workers, rule_id, lambda e, m=marker: e["reason"] == m)
        lat.state.append(done - start)
        state = await writer.get_state(rule_id)
        assert state.set_at is not None and state.reason == marker
        stamp = state.set_at.timestamp()
        lat.state_split.append((stamp - start, first - stamp, done - stamp))
    return lat


def split(label: str, triples: list[tuple[float, float, float]]) -> str:
    cells = []
    for column in range(3):
        values = [t[column] for t in triples]
        cells.append(f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}")
    return f"| {label} | {' | '.join(cells)} |"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def row(label: str, values: list[float], target: float) -> str:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    verdict = "met" if p99 <= target else "**missed**"
    return (f"| {label} | {len(values)} | {ms(p50)} | {ms(p99)} | {ms(max(values))} | "
            f"≤ {ms(target)} | {verdict} |")


async def idle_statements(workers: Sequence[Worker], window: float) -> list[float]:
    """SQL statements each worker issued per second while nothing changed."""
    before = [int((await w.status())["db_statements"]) for w in workers]
    await asyncio.sleep(window)
    after = [int((await w.status())["db_statements"]) for w in workers]
    return [(b - a) / window for a, b in zip(before, after, strict=True)]


async def server_transactions(url: str, window: float) -> float:
    """Transactions per second the server committed in this database (every client)."""
    parsed = make_url(url)
    conn = await asyncpg.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                                 password=parsed.password, database=parsed.database)
    query = ("SELECT xact_commit + xact_rollback FROM pg_stat_database "
             "WHERE datname = current_database()")
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        before = int(await conn.fetchval(query))
        await asyncio.sleep(window)
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        after = int(await conn.fetchval(query))
    finally:
        await conn.close()
    return (after - before - 2) / window  # minus this connection's own two reads


async def query_cost(url: str, rules: int, calls: int) -> tuple[float, float]:
    """p50/p99 seconds of the idle query (`head_revision`) with `rules` rules stored."""
    repo = RuleRepository(url)
    try:
        await repo.connect()
        async with repo.engine.begin() as conn:
            await conn.execute(update(RevisionRow).where(RevisionRow.id == 1)
                               .values(revision=rules))
            stamp = datetime.now(UTC)
            await conn.execute(insert(RuleRow), [
                {"rule_id": f"Q{n:05d}", "rule_version": 1, "source_path": None,
                 "yaml_content": rule_yaml(f"Q{n:05d}", 1, n), "updated_at": stamp,
                 "updated_by": "bench", "revision": n + 1} for n in range(rules)])
            await conn.execute(insert(ChangeLogRow), [
                {"revision": n + 1, "rule_id": f"Q{n:05d}", "change_kind": "definition",
                 "changed_at": stamp} for n in range(rules)])
        for _ in range(200):
            await repo.head_revision()
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            await repo.head_revision()
            samples.append(time.perf_counter() - start)
        return percentile(samples, 50), percentile(samples, 99)
    finally:
        await repo.dispose()


async def stop_workers(swarm: Swarm) -> None:
    for worker in swarm.workers:
        if worker.proc.running:
            await worker.proc.stop()
        if worker.client is not None:
            await worker.client.aclose()
            worker.client = None
    swarm.workers.clear()


async def heal_time(swarm: Swarm, writer: DatabaseRuleStore, poll_interval: float,
                    outage: float) -> float:
    """Seconds from the connection coming back to every worker being at the head."""
    url = make_url(swarm.db_url)
    async with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host=proxy.host, port=proxy.port).render_as_string(
            hide_password=False)
        workers = await swarm.start_workers(3, poll_interval=poll_interval, db_url=proxied)
        proxy.outage()
        for i in range(10):
            write_rule(swarm.rules_dir, f"S{i:04d}", rule_yaml(f"S{i:04d}", 50 + i, i))
            await writer.set_state(f"S{i + 10:04d}", RuleState(
                StateName.DISABLED, reason=f"outage {poll_interval}/{i}"), "bench")
        await asyncio.sleep(outage)
        head = await writer.repo.head_revision()
        proxy.resume()
        resumed = time.monotonic()
        pending = set(range(len(workers)))
        while pending:
            for index in list(pending):
                status = await workers[index].status()
                if (status["revision"] or 0) >= head:
                    pending.discard(index)
            if time.monotonic() - resumed > 30:
                raise RuntimeError("workers did not catch up within 30 s")
            await asyncio.sleep(0.005)
        healed = time.monotonic() - resumed
        await stop_workers(swarm)
    return healed


async def run(quick: bool) -> list[str]:
    n_notify, n_fast, n_slow = (30, 20, 8) if quick else (200, 100, 40)
    out = ["### Swarm (PostgreSQL, real processes)\n",
           f"Command: `{COMMAND}`. A master and 3 workers (16 where said) on this host; "
           "latency is from just before the save (or `set_state`) to the last worker's "
           "engine applying it, read from each worker's own `applied_at` stamp. "
           "Figures in ms.\n"]
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        root = Path(tmp)
        async with pg_database() as url:
            swarm = Swarm(ProcessGroup(root), root, url, 1.0)
            writer = DatabaseRuleStore(url)
            try:
                await run_cli("db", "upgrade", "--db", url)
                seed_directory(swarm.rules_dir, initial_rules(RULES, 0))
                await swarm.start_master()
                await writer.start()
                table = ["| path, mode | n | p50 | p99 | max | target p99 | |",
                         "|---|---:|---:|---:|---:|---:|---|"]
                modes = [("LISTEN/NOTIFY (poll 1 s)", True, 1.0, n_notify, 0.05, 0.020),
                         ("polling only, 100 ms", False, 0.1, n_fast, 0.1, 0.120),
                         ("polling only, 1 s", False, 1.0, n_slow, 1.0, 1.020)]
                idle: list[str] = []
                splits = ["| path, mode | save/call → row stamped | "
                          "stamped → first worker applied | stamped → last worker applied |",
                          "|---|---:|---:|---:|"]
                sampler = Sampler()
                for seed, (label, listen, interval, samples, jitter, target) in \
                        enumerate(modes):
                    log(f"swarm: {label}, {samples} samples")
                    workers = await swarm.start_workers(3, poll_interval=interval,
                                                        listen=listen)
                    await swarm.wait_converged(timeout=30)
                    lat = await measure(swarm, workers, writer, sampler, samples=samples,
                                        jitter=jitter, seed=seed)
                    table.append(row(f"file saved → 3 workers, {label}", lat.file, target))
                    table.append(row(f"`set_state` → 3 workers, {label}", lat.state, target))
                    splits.append(split(f"file saved, {label}", lat.file_split))
                    splits.append(split(f"`set_state`, {label}", lat.state_split))
                    window = max(5.0, 5 * interval)
                    per_worker = await idle_statements(workers, window)
                    idle.append(f"| {label} | {interval:g} s | "
                                f"{max(per_worker):.2f} | {max(per_worker) * interval:.2f} |")
                    await stop_workers(swarm)
                out += ["#### Propagation\n", *table, "",
                        "Where the time goes, p50 / p99 ms (the writer stamps the row just "
                        "before its commit; the master's share includes inotify and "
                        "compiling):\n",
                        *splits, ""]

                log("swarm: 16 workers")
                workers = await swarm.start_workers(16, poll_interval=0.1)
                await swarm.wait_converged(timeout=60)
                lat = await measure(swarm, workers, writer, sampler, samples=n_fast // 2,
                                    jitter=0.05, seed=7)
                per_worker = await idle_statements(workers, 5.0)
                server = await server_transactions(url, 5.0)
                await stop_workers(swarm)
                out += [
                    "#### 16 workers (LISTEN/NOTIFY, poll 100 ms)\n",
                    "| path | n | p50 | p99 | max | target p99 | |",
                    "|---|---:|---:|---:|---:|---:|---|",
                    row("file saved → 16 workers", lat.file, 0.020),
                    row("`set_state` → 16 workers", lat.state, 0.020), "",
                    f"Idle: at most {max(per_worker):.2f} statements/s per worker "
                    f"({max(per_worker) * 0.1:.2f} per poll interval); the server committed "
                    f"{server:.1f} transactions/s in this database from all 17 processes "
                    f"(16 x 10 polls/s = 160 expected, plus the master's lease heartbeat).\n",
                ]

                out += ["#### Idle worker cost\n",
                        "Statements counted by the worker's own SQLAlchemy engine over "
                        "a quiet window (target: ≤ 1 per poll interval).\n",
                        "| mode | poll | statements/s (worst worker) | per poll interval |",
                        "|---|---:|---:|---:|", *idle, ""]
                log("swarm: heal after a cut connection")
                heal = [("100 ms", await heal_time(swarm, writer, 0.1, 1.0), 0.1),
                        ("1 s", await heal_time(swarm, writer, 1.0, 3.0), 1.0)]
                out += ["#### After a cut connection\n",
                        "3 workers reach the database through a proxy that drops every "
                        "connection and refuses new ones while the master and an operator "
                        "write; time from the proxy letting connections through again to "
                        "every worker being at the database's head revision "
                        "(target: 2 poll intervals).\n",
                        "| poll | healed in | poll intervals | |", "|---:|---:|---:|---|"]
                for label, seconds, interval in heal:
                    verdict = "met" if seconds <= 2 * interval else "**missed**"
                    out.append(f"| {label} | {ms(seconds)} ms | {seconds / interval:.2f} | "
                               f"{verdict} |")
                out.append("")
            finally:
                await writer.stop()
                await swarm.aclose()

        log("swarm: idle query cost")
        cost = []
        for rules in (10, 10_000):
            async with pg_database() as url:
                await run_cli("db", "upgrade", "--db", url)
                p50, p99 = await query_cost(url, rules, 500 if quick else 3000)
                cost.append(f"| {rules:,} | {ms(p50)} | {ms(p99)} |")
        out += ["#### The idle query\n",
                "`RuleRepository.head_revision()` (the one statement an idle poll issues: "
                "the `ttp_revision` row by primary key), timed from this process "
                "end to end (round trip included), with that many rules and change-log "
                "entries stored (target ≤ 0.5 ms, flat).\n",
                "| rules stored | p50 ms | p99 ms |", "|---:|---:|---:|", *cost, ""]
    return out


@dataclass(frozen=True)
class NatsRun:
    url: str
    prefix: str
    databases: tuple[str, ...]
    workers: tuple[int, ...]
    samples: int


#: Propagation targets (p99 seconds) of issue 11 with NATS, per database.
NATS_TARGETS = {"postgres": 0.020, "sqlite": 0.050, "mariadb": 0.050}
#: The poll interval of the swarms without NATS (LISTEN wakes PostgreSQL's at once).
PLAIN_POLL = 1.0


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux `/proc`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"


async def delete_streams(url: str, prefixes: Sequence[str]) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for prefix in prefixes:
            for stream in (f"{prefix}_changes", f"KV_{prefix}_fleet", f"{prefix}_bus"):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(stream)
    finally:
        await nc.close()


def commit_hint(writer: DatabaseRuleStore, url: str,
                prefix: str) -> Callable[[], Awaitable[object]]:
    """What `state set --nats` does after its commit: the same `send_commit_hint`,
    connecting to NATS for each call as the command does."""
    from decnet.ttp.store.database.commithint import send_commit_hint
    from decnet.ttp.store.database.jetstream import NatsNames

    names = NatsNames(prefix)

    async def send() -> bool:
        return await send_commit_hint(url, names, await writer.repo.head())

    return send


async def nats_swarm(database: str, count: int, prefix: str | None, url: str, root: Path,
                     samples: int, seed: int) -> tuple[Latencies, str]:
    """One swarm (`prefix` None: without NATS): its latencies and the load meanwhile."""
    async with DATABASES[database](root) as db_url:
        swarm = Swarm(ProcessGroup(root), root, db_url, PLAIN_POLL)
        if prefix is not None:
            swarm.master_args += ["--nats", url, "--nats-prefix", prefix]
            swarm.worker_args += ["--nats", url, "--nats-prefix", prefix]
        writer = DatabaseRuleStore(db_url)
        try:
            await swarm.upgrade()
            seed_directory(swarm.rules_dir, initial_rules(RULES, 0))
            await swarm.start_master()
            await writer.start()
            workers: list[Worker] = []
            while len(workers) < count:  # a few at a time: 16 starting at once time out
                workers += await swarm.start_workers(min(4, count - len(workers)))
            await swarm.wait_converged(timeout=120)
            jitter = 0.05 if prefix is not None or database == "postgres" else PLAIN_POLL
            before = [cpu_seconds(w.proc.pid) for w in workers]
            lat = await measure(swarm, workers, writer, Sampler(), samples=samples,
                                jitter=jitter, seed=seed,
                                hint=None if prefix is None else commit_hint(writer, url, prefix))
            spent = [cpu_seconds(w.proc.pid) - b for w, b in zip(workers, before, strict=True)]
            per_change = sum(spent) / len(spent) / (2 * samples)
            return lat, f"{load()}, {per_change * 1000:.1f} ms CPU"
        finally:
            await writer.stop()
            await swarm.aclose()


async def publisher_latency(database: str, url: str, prefix: str, root: Path,
                            samples: int) -> list[float]:
    """Seconds from just before another writer's `set_state` to its revision arriving
    on the stream (a NATS subscriber here), through a `ChangePublisher` in this process."""
    import nats

    from decnet.ttp.store.database.jetstream import ChangePublisher, NatsNames, decode_entry

    names = NatsNames(prefix)
    arrived: dict[int, float] = {}
    rng = random.Random(len(database))
    async with DATABASES[database](root) as db_url:
        await run_cli("db", "upgrade", "--db", db_url)
        writer, repo = DatabaseRuleStore(db_url), RuleRepository(db_url)
        nc = await nats.connect(url)
        publishing: asyncio.Task[None] | None = None
        try:
            await writer.start()

            async def received(msg: Any) -> None:
                arrived[decode_entry(msg.data)[1].revision] = time.time()

            await nc.subscribe(names.subject, cb=received)
            publisher = ChangePublisher(repo, url, names)
            hint = commit_hint(writer, url, prefix)
            publishing = asyncio.create_task(publisher.run())
            await nc.flush()
            deadline = time.monotonic() + 10
            while publisher.published_revision is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("the publisher did not start")
                await asyncio.sleep(0.01)
            latencies = []
            for i in range(samples + 1):
                await asyncio.sleep(rng.uniform(0.01, 0.05))
                start = time.time()
                await writer.set_state("P0001", RuleState(
                    StateName.DISABLED, reason=f"publisher {i}"), "bench")
                await hint()
                revision = await writer.repo.head_revision()
                deadline = time.monotonic() + 10
                while revision not in arrived:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"revision {revision} never reached the stream")
                    await asyncio.sleep(0.002)
                if i:  # the first one may find the LISTEN (or file watch) coming up
                    latencies.append(arrived[revision] - start)
            return latencies
        finally:
            if publishing is not None:
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
            await nc.close()
            await writer.stop()
            await repo.dispose()


async def run_nats(quick: bool, config: NatsRun) -> list[str]:
    out = ["### Swarm through NATS JetStream (real processes)\n",
           f"Command: `{COMMAND} --nats{' --quick' if quick else ''}`. A master and "
           "N workers on this host with `--nats` (each swarm under a prefix of its own), "
           "and the same swarm without NATS right after it (PostgreSQL: LISTEN/NOTIFY; "
           f"SQLite file and MariaDB: polling every {PLAIN_POLL:g} s, the default). "
           "Latency to the last worker, ms; load average (1 / 5 min) at the end of "
           "each swarm (with NATS; without) and the CPU a worker spent per change "
           "(its whole process: the apply, its HTTP answers to the benchmark's looks, "
           "its safety poll and reports).\n",
           "| database | workers | path | NATS p50 | NATS p99 | NATS max | "
           "without p50 | without p99 | target p99 (NATS) | | load, worker CPU/change |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    splits = ["| database | workers | path | save/call → row stamped | "
              "stamped → first worker | stamped → last worker |",
              "|---|---:|---|---:|---:|---:|"]
    used: list[str] = []
    try:
        for database in config.databases:
            for count in config.workers:
                prefix = f"{config.prefix}_{database}{count}"
                used.append(prefix)
                plain_samples = config.samples if database == "postgres" else max(
                    5, config.samples // 4)
                with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
                    log(f"swarm: {database}, {count} workers, NATS, {config.samples} samples")
                    pushed, pushed_load = await nats_swarm(
                        database, count, prefix, config.url, Path(tmp) / "nats",
                        config.samples, seed=count)
                    log(f"swarm: {database}, {count} workers, no NATS, {plain_samples}")
                    plain, plain_load = await nats_swarm(
                        database, count, None, config.url, Path(tmp) / "plain",
                        plain_samples, seed=count)
                target = NATS_TARGETS[database]
                for path, with_nats, without in (
                        ("file saved", pushed.file, plain.file),
                        ("`set_state`", pushed.state, plain.state)):
                    p99 = percentile(with_nats, 99)
                    verdict = "met" if p99 <= target else "**missed**"
                    out.append(
                        f"| {database} | {count} | {path} | {ms(percentile(with_nats, 50))} | "
                        f"{ms(p99)} | {ms(max(with_nats))} | "
                        f"{ms(percentile(without, 50))} | {ms(percentile(without, 99))} | "
                        f"≤ {ms(target)} | {verdict} | {pushed_load}; {plain_load} |")
                splits.append(split(f"{database} | {count} | file saved", pushed.file_split))
                splits.append(split(f"{database} | {count} | `set_state`", pushed.state_split))
        publisher = ["| database | n | p50 | p99 | max | load |", "|---|---:|---:|---:|---:|---|"]
        for database in config.databases:
            prefix = f"{config.prefix}_{database}pub"
            used.append(prefix)
            log(f"publisher: {database}")
            with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
                lat = await publisher_latency(database, config.url, prefix, Path(tmp),
                                              config.samples * 2)
            publisher.append(f"| {database} | {len(lat)} | {ms(percentile(lat, 50))} | "
                             f"{ms(percentile(lat, 99))} | {ms(max(lat))} | {load()} |")
    finally:
        await delete_streams(config.url, used)
    return [*out, "", "Where the time goes with NATS, p50 / p99 ms:\n", *splits, "",
            "The publisher alone: from just before another writer's `set_state` to the "
            "revision's message arriving at a NATS subscriber (the publisher and the "
            "subscriber in the benchmark's process; the writer on its own connection, "
            "sending the commit hint of `state set --nats` after each commit: NOTIFY, the "
            "SQLite file's inotify watch or the hint, whichever comes first, wakes the "
            "publisher), ms:\n", *publisher, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--nats", nargs="?", const="nats://127.0.0.1:4222", default=None,
                        metavar="URL", help="the fleet through NATS JetStream at URL")
    parser.add_argument("--nats-prefix", default=f"bench_{uuid.uuid4().hex[:8]}",
                        help="names of this run's streams (unique per run by default)")
    parser.add_argument("--databases", nargs="+", choices=sorted(DATABASES),
                        default=["postgres", "sqlite", "mariadb"])
    parser.add_argument("--workers", nargs="+", type=int, default=[3, 16])
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per swarm (default 100, 30 with --quick)")
    args = parser.parse_args()
    if args.nats is None:
        print("\n".join(asyncio.run(run(args.quick))))
        return
    config = NatsRun(args.nats, args.nats_prefix, tuple(args.databases), tuple(args.workers),
                     args.samples or (30 if args.quick else 100))
    print("\n".join(asyncio.run(run_nats(args.quick, config))))


if __name__ == "__main__":
    main()
