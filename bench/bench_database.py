"""Database store: set_state latency and load_compiled of 10,000 rules, per database.

Run: python -m bench.bench_database   (`--start` runs only the worker-start section)
PostgreSQL and MariaDB come from DECNET_TTP_TEST_POSTGRES_URL / DECNET_TTP_TEST_MARIADB_URL
(defaults: the local services); a fresh database is created and dropped for each.

Worker start: a fresh process per measurement runs one `load_compiled` on a fresh store,
as `decnet-ttp worker --db URL` does, over rows as the master writes them (with their
stored form) and over rows without one (written before migration 0004: the YAML path).
`DECNET_TTP_BENCH_BASELINE=DIR` adds the same measurement with the package found in DIR
(an export of an earlier commit), for a before/after in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from sqlalchemy import insert, text, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.synthetic import percentile, rule_id, rule_yaml
from decnet.ttp.store.base import RuleState, StateName, utcnow
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql.migrate import upgrade
from decnet.ttp.store.sql.models import RevisionRow, RuleRow

COMMAND = "python -m bench.bench_database"
SET_STATE_CALLS = 2_000
WARMUP = 200
RULES = 10_000
#: A fresh database migrated to the given schema revision ("head" by default).
Fresh = Callable[..., contextlib.AbstractAsyncContextManager[str]]
#: The schema an export of the code before the stored form knows.
BASELINE_SCHEMA = "0003"


def _server_url(env: str, default: str) -> URL:
    return make_url(os.environ.get(env) or default)


def _reachable(url: URL) -> bool:
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 0), timeout=1.0):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def sqlite_file(revision: str = "head") -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="decnet-ttp-bench-") as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'rules.db'}"
        await upgrade(url, revision)
        yield url


def server_database(base: URL) -> Fresh:
    @contextlib.asynccontextmanager
    async def fresh(revision: str = "head") -> AsyncIterator[str]:
        name = f"decnet_ttp_bench_{uuid.uuid4().hex[:8]}"
        postgres = base.get_backend_name() == "postgresql"
        admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                await conn.execute(text(f"CREATE DATABASE {name}"))
            url = base.set(database=name).render_as_string(hide_password=False)
            try:
                await upgrade(url, revision)
                yield url
            finally:
                async with admin.connect() as conn:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS {name}" +
                                            (" WITH (FORCE)" if postgres else "")))
        finally:
            await admin.dispose()

    return fresh


async def set_state_latency(url: str) -> list[float]:
    """Seconds from the call to the change committed and in a subscriber's inbox."""
    store = DatabaseRuleStore(url)
    await store.start()
    try:
        changes = store.subscribe_changes()
        states = [RuleState(StateName.DISABLED, reason="bench"),
                  RuleState(StateName.CLIPPED, confidence_max=0.5, reason="bench")]
        samples = []
        for n in range(WARMUP + SET_STATE_CALLS):
            start = time.perf_counter()
            await store.set_state(f"R{n % 100:04d}", states[n % 2], "bench")
            await anext(changes)  # already queued: set_state announces before returning
            if n >= WARMUP:
                samples.append(time.perf_counter() - start)
        return samples
    finally:
        await store.stop()


async def commit_floor(url: str) -> list[float]:
    """Seconds per bare one-row UPDATE + COMMIT through the raw driver: the disk's floor."""
    parsed = make_url(url)
    samples = []
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(parsed.database or ":memory:", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        for n in range(WARMUP + SET_STATE_CALLS):
            start = time.perf_counter()
            conn.execute("UPDATE ttp_revision SET revision = revision + 1 WHERE id = 1")
            if n >= WARMUP:
                samples.append(time.perf_counter() - start)
        conn.close()
    elif backend == "postgresql":
        import asyncpg

        pg = await asyncpg.connect(parsed.set(drivername="postgresql")
                                   .render_as_string(hide_password=False))
        for n in range(WARMUP + SET_STATE_CALLS):
            start = time.perf_counter()
            await pg.execute("UPDATE ttp_revision SET revision = revision + 1 WHERE id = 1")
            if n >= WARMUP:
                samples.append(time.perf_counter() - start)
        await pg.close()
    else:
        import asyncmy

        my = await asyncmy.connect(host=parsed.host, port=parsed.port or 3306,
                                   user=parsed.username, password=parsed.password or "",
                                   db=parsed.database, autocommit=True)
        async with my.cursor() as cursor:
            for n in range(WARMUP + SET_STATE_CALLS):
                start = time.perf_counter()
                await cursor.execute(
                    "UPDATE ttp_revision SET revision = revision + 1 WHERE id = 1")
                if n >= WARMUP:
                    samples.append(time.perf_counter() - start)
        my.close()
    return samples


def compile_floor(count: int) -> float:
    """Seconds to compile `count` synthetic rules with no database at all."""
    from decnet.ttp.rules.compiler import compile_rule

    texts = [rule_yaml(n) for n in range(count)]
    gc.collect()
    start = time.perf_counter()
    for n, yaml_text in enumerate(texts):
        compile_rule(yaml_text, source=f"{rule_id(n)}.yaml", expected_rule_id=rule_id(n))
    return time.perf_counter() - start


async def bulk_load(url: str, count: int, *, forms: bool = False) -> None:
    """Insert `count` synthetic rules in one transaction (setup, not measured); with
    `forms`, each with the stored form the master writes beside its YAML."""
    from decnet.ttp.rules.stored_form import compiler_id, derive_form

    engine = create_async_engine(url)
    try:
        now = utcnow()
        rows = [{"rule_id": rule_id(n), "rule_version": 1, "source_path": f"{rule_id(n)}.yaml",
                 "yaml_content": rule_yaml(n), "updated_at": now, "updated_by": "bench",
                 "revision": 1} for n in range(count)]
        if forms:
            for row in rows:
                row["compiled_form"] = derive_form(str(row["yaml_content"]), rule_id=str(
                    row["rule_id"]), source=str(row["source_path"]))
                row["compiled_by"] = compiler_id()
        async with engine.begin() as conn:
            for start in range(0, count, 1000):
                await conn.execute(insert(RuleRow), rows[start:start + 1000])
            await conn.execute(update(RevisionRow).values(revision=1))
    finally:
        await engine.dispose()


async def load_times(url: str) -> tuple[float, float, float]:
    """Best of 3: a fresh store's load_compiled (compiles all), then a re-load (cached),
    and the database read alone (`repo.snapshot()`)."""
    cold = warm = read = float("inf")
    for _ in range(3):
        store = DatabaseRuleStore(url)
        try:
            gc.collect()
            start = time.perf_counter()
            rules = await store.load_compiled()
            cold = min(cold, time.perf_counter() - start)
            assert len(rules) == RULES, len(rules)
            start = time.perf_counter()
            rules = await store.load_compiled()
            warm = min(warm, time.perf_counter() - start)
            start = time.perf_counter()
            await store.repo.snapshot()
            read = min(read, time.perf_counter() - start)
        finally:
            await store.stop()
    return cold, warm, read


#: Run in a fresh interpreter: one load of a fresh store, as a worker starts.
_START_PROBE = """
import asyncio, gc, json, sys, time, tracemalloc
if len(sys.argv) > 3:  # an earlier export first, past the editable install's finder
    sys.path.insert(0, sys.argv[3])
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
from decnet.ttp.store.database import DatabaseRuleStore

async def load(url, traced):
    store = DatabaseRuleStore(url)
    gc.collect()
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    rules = await store.load_compiled()
    seconds = time.perf_counter() - start
    await asyncio.sleep(0)  # let the event loop drop what the read handed over
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] if traced else 0
    tracemalloc.stop()
    await store.stop()
    return len(rules), seconds, growth

async def main(url, traced):
    count, seconds, growth = await load(url, traced)
    # a second fresh store in the same process: the rules' own memory, without the
    # one-time imports and SQLAlchemy set-up the first load pays
    _, _, warm = await load(url, traced)
    print(json.dumps({"rules": count, "seconds": seconds, "traced": growth,
                      "traced_warm": warm}))

asyncio.run(main(sys.argv[1], sys.argv[2] == "traced"))
"""


def start_probe(url: str, *, traced: bool, package: str | None = None) -> dict[str, float]:
    """One worker start in a fresh process; `package` puts an earlier export first."""
    done = subprocess.run([sys.executable, "-c", _START_PROBE, url,
                           "traced" if traced else "timed", *([package] if package else [])],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"worker start probe failed:\n{done.stderr}")
    out = done.stdout
    found: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    assert found["rules"] == RULES, found
    return found


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def start_rows(url_forms: str, url_plain: str, url_old: str | None,
               runs: int) -> list[str]:
    """Table rows: worker start (median and best of `runs` fresh processes, traced
    growth) per variant, the variants interleaved run by run."""
    variants: list[tuple[str, str, str | None]] = [
        ("stored form (rows as the master writes them)", url_forms, None),
                ("YAML only (rows from before migration 0004)", url_plain, None)]
    baseline = os.environ.get("DECNET_TTP_BENCH_BASELINE")
    if baseline and url_old:
        variants.append(("previous code (same rows, schema 0003)", url_old, baseline))
    times: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    loads = []
    for _ in range(runs):
        loads.append(load_average())
        for name, url, package in variants:
            times[name].append(start_probe(url, traced=False, package=package)["seconds"])
    rows = []
    for name, url, package in variants:
        memory = start_probe(url, traced=True, package=package)
        samples = times[name]
        rows.append(f"| {name} | {statistics.median(samples) * 1e3:,.0f} ms | "
                    f"{min(samples) * 1e3:,.0f} ms | {memory['traced'] / 1e6:.1f} MB | "
                    f"{memory['traced_warm'] / 1e6:.1f} MB |")
    rows.append(f"\nLoad average (1 / 5 / 15 min) at each run: {'; '.join(loads)}.")
    return rows


async def worker_start(databases: list[tuple[str, Fresh | None]], runs: int) -> None:
    print(f"\n| worker start, {RULES:,} rules, fresh process ({runs} runs) | median | best "
          "| traced growth | same, second store |")
    print("|---|---:|---:|---:|---:|")
    for name, fresh in databases:
        if fresh is None:
            print(f"| {name} | not reachable | | | |")
            continue
        async with fresh() as with_forms, fresh() as plain, \
                fresh(BASELINE_SCHEMA) as old:
            await bulk_load(with_forms, RULES, forms=True)
            await bulk_load(plain, RULES)
            await bulk_load(old, RULES)
            print(f"| **{name}** | | | | |")
            for row in start_rows(with_forms, plain, old, runs):
                print(row)


async def main() -> None:
    postgres = _server_url("DECNET_TTP_TEST_POSTGRES_URL",
                           "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    mariadb = _server_url("DECNET_TTP_TEST_MARIADB_URL",
                          "mysql+asyncmy://root@127.0.0.1:3306/test")
    databases: list[tuple[str, Fresh | None]]
    databases = [
        ("SQLite file (WAL)", sqlite_file),
        ("PostgreSQL (loopback)", server_database(postgres) if _reachable(postgres) else None),
        ("MariaDB (loopback)", server_database(mariadb) if _reachable(mariadb) else None),
    ]
    if "--start" in sys.argv:
        print(f"### Worker start\n\n`{COMMAND} --start` (Python {sys.version.split()[0]})")
        await worker_start(databases, int(os.environ.get("DECNET_TTP_BENCH_RUNS", "5")))
        return
    print(f"### Database store\n\n`{COMMAND}` (Python {sys.version.split()[0]})\n")
    latency_rows, load_rows = [], []
    for name, fresh in databases:
        if fresh is None:
            latency_rows.append(f"| {name} | not reachable | | | | |")
            load_rows.append(f"| {name} | not reachable | | |")
            continue
        async with fresh() as url:
            samples = await set_state_latency(url)
            floor = await commit_floor(url)
            latency_rows.append(
                f"| {name} | {percentile(samples, 50) * 1e3:.2f} ms | "
                f"{percentile(samples, 99) * 1e3:.2f} ms | {max(samples) * 1e3:.2f} ms | "
                f"{percentile(floor, 50) * 1e3:.2f} ms | {percentile(floor, 99) * 1e3:.2f} ms |")
        async with fresh() as url:
            await bulk_load(url, RULES)
            cold, warm, read = await load_times(url)
            load_rows.append(f"| {name} | {cold * 1e3:,.0f} ms | {read * 1e3:,.0f} ms | "
                             f"{warm * 1e3:,.0f} ms |")
    print(f"| set_state (committed and announced), {SET_STATE_CALLS:,} calls | p50 | p99 | max "
          "| floor p50 | floor p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(latency_rows))
    print("\nFloor: a bare one-row `UPDATE` committed through the raw driver on the same "
          "database, in the same run (the disk's and the server's own cost).")
    compile_only = min(compile_floor(RULES) for _ in range(2))
    print(f"\n| load_compiled, {RULES:,} rules (best of 3) | fresh store | of which database "
          "read | re-load (compile cache) |")
    print("|---|---:|---:|---:|")
    print("\n".join(load_rows))
    print(f"\nCompiling the same {RULES:,} rules with no database at all (`compile_rule`, "
          f"best of 2): {compile_only * 1e3:,.0f} ms — the floor of a fresh load.")
    await worker_start(databases, int(os.environ.get("DECNET_TTP_BENCH_RUNS", "3")))


if __name__ == "__main__":
    asyncio.run(main())
