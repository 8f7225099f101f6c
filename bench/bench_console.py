"""The console's pages over 10,000 rules and 1,000 workers' reports: server time per page,
through the whole ASGI app (session and token check, rules view, fleet mirror, view,
template), on an SQLite database store, signed in as an admin.

The reports are real: 1,000 JSON reports put in a JetStream KV bucket of the local NATS
(`DECNET_TTP_NATS_URL`, a fresh `--nats-prefix` deleted at the end) and put again every
report interval as workers do, read by the master's `FleetSource` the way `master --nats`
does.

Run: python -m bench.bench_console [--runs N]
Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import sys
import time
import tracemalloc
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import nats  # noqa: E402
import orjson  # noqa: E402

from bench.synthetic import percentile, rule_id, rule_yaml  # noqa: E402
from decnet.swarm.console.mount import create_master_app  # noqa: E402
from decnet.swarm.fleet import FleetSource, fleet_bucket  # noqa: E402
from decnet.ttp.constants import CONSOLE_ADVANCE_NEW_MAX, FLEET_REPORT_INTERVAL  # noqa: E402
from decnet.ttp.loops import cancel_and_wait  # noqa: E402
from decnet.ttp.rules.compiler import compile_rule  # noqa: E402
from decnet.ttp.store.database import DatabaseRuleStore  # noqa: E402
from decnet.ttp.store.database.jetstream import NatsNames  # noqa: E402
from decnet.ttp.store.sql.tokens import TokenTable  # noqa: E402
from decnet.vocabulary import RuleState, Scope, StateName, utcnow  # noqa: E402

COMMAND = "python -m bench.bench_console"
NATS_URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
RULES = 10_000
SILENCED = 500
SCOPED = 200
#: state history entries (the silences and clips above, then changes made and cleared)
HISTORY = 5_000
WORKERS = 1_000
#: requests timed right after a state change (the view is loaded again)
AFTER_CHANGE = 10
#: pages timed right after a change: the cheapest and the costliest to derive
CHANGED = ("/ui/rules", "/ui/coverage/layer.json")
PAGES = ("/ui/", "/ui/rules", "/ui/rules?q=synthetic_99&state=enabled",
         "/ui/rules?scoped=yes", f"/ui/rules/{rule_id(42)}", "/ui/history",
         "/ui/history?by=bench-ops", "/ui/coverage", "/ui/coverage/layer.json")


class Collections:
    """Pauses of the garbage collector's full (generation 2) collections."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._start)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def seeded() -> DatabaseRuleStore:
    store = DatabaseRuleStore()
    await store.start()
    for n in range(RULES):
        rule = compile_rule(rule_yaml(n), source=f"{rule_id(n)}.yaml")
        await store.upsert_rule(rule, source_path=f"{rule_id(n)}.yaml", updated_by="bench")
    now = utcnow()
    for n in range(SILENCED):
        await store.set_state(rule_id(n * 7), RuleState(
            StateName.DISABLED, expires_at=now + timedelta(minutes=10 + n),
            reason=f"bench silence {n}"), "bench")
    for n in range(SCOPED):
        await store.set_scoped_state(rule_id(n * 11), Scope(frozenset({f"decky-{n:03d}"})),
                                     RuleState(StateName.CLIPPED, confidence_max=0.3,
                                               reason="bench clip"), "bench")
    for n in range(HISTORY - SILENCED - SCOPED):  # an audit log of some weeks: on, off
        rule = rule_id(5_000 + n // 2)
        if n % 2:
            await store.clear_state(rule, "bench-ops", reason="done")
        else:
            await store.set_state(rule, RuleState(StateName.CLIPPED, confidence_max=0.5,
                                                  reason=f"bench change {n}"), "bench-ops")
    await TokenTable(store.repo).create("bench", "admin", "dttp_bench", None)
    return store


def report(n: int, head: int) -> dict[str, Any]:
    """A worker's report as `worker_report` writes it: most at the head, some behind,
    some silent."""
    behind = n % 33 == 0
    silent = n % 50 == 1
    return {"worker_id": f"worker-{n:04d}", "host": f"host-{n:04d}",
            "http": f"http://10.0.{n // 250}.{n % 250}:8080", "revision": head - 3 if behind
            else head, "ruleset_sha256": f"{(n % 3 if behind else 0):064x}",
            "rules_loaded": RULES, "last_event_at": time.time() - n % 60, "nats": True,
            "reported_at": time.time() - (120 if silent else n % 5)}


async def put_reports(names: NatsNames, head: int, started: asyncio.Event) -> None:
    """Every worker's report, then again every report interval as workers do (the
    mirror follows about 200 puts a second meanwhile), until cancelled."""
    nc = await nats.connect(NATS_URL)
    try:
        bucket = await fleet_bucket(nc, names)
        while True:
            for first in range(0, WORKERS, 100):
                await asyncio.gather(*(bucket.put(f"worker-{n:04d}",
                                                  orjson.dumps(report(n, head)))
                                       for n in range(first, min(WORKERS, first + 100))))
                if started.is_set():
                    await asyncio.sleep(FLEET_REPORT_INTERVAL * 100 / WORKERS)
            started.set()
    finally:
        await nc.close()


async def per_key_read(names: NatsNames) -> float:
    """The former per-page read: list the keys, then fetch each (for reference)."""
    nc = await nats.connect(NATS_URL)
    try:
        bucket = await fleet_bucket(nc, names, create=False)
        start = time.perf_counter()
        for key in await bucket.keys():
            orjson.loads((await bucket.get(key)).value or b"{}")
        return time.perf_counter() - start
    finally:
        await nc.close()


async def drop_bucket(names: NatsNames) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_key_value(names.fleet_bucket)
    finally:
        await nc.close()


async def signed_in(client: httpx.AsyncClient) -> None:
    login = (await client.get("/ui/login")).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert csrf is not None
    reply = await client.post("/ui/login", data={"token": "dttp_bench",
                                                  "csrf_token": csrf.group(1)})
    assert reply.status_code == 303, reply.text


def row(label: str, samples: list[float], size: int | None = None,
        cpu: list[float] | None = None) -> str:
    return (f"| {label} | {percentile(samples, 50) * 1e3:,.1f} ms | "
            f"{percentile(samples, 95) * 1e3:,.1f} ms | {max(samples) * 1e3:,.1f} ms | "
            f"{'' if size is None else f'{size:,}'} | "
            f"{'' if cpu is None else f'{percentile(cpu, 50) * 1e3:,.1f} ms'} |")


#: CPU seconds of this process (all threads) per timed request, by path
CPU: dict[str, list[float]] = {}


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[float, int]:
    cpu = time.process_time()
    start = time.perf_counter()
    reply = await client.get(path)
    elapsed = time.perf_counter() - start
    CPU.setdefault(path, []).append(time.process_time() - cpu)
    assert reply.status_code == 200, (path, reply.status_code, reply.text[:300])
    return elapsed, len(reply.content)


async def redefine(store: DatabaseRuleStore, n: int, version: int) -> None:
    """A new version of rule `n`, as the master writes it from its rules directory."""
    rule = compile_rule(rule_yaml(n, version), source=f"{rule_id(n)}.yaml")
    await store.upsert_rule(rule, source_path=f"{rule_id(n)}.yaml", updated_by="bench")


async def memory_of_caches(store: DatabaseRuleStore, source: FleetSource,
                           client: httpx.AsyncClient) -> tuple[float, float]:
    """MB traced for a whole new rules view with every derived page (beyond the compiled
    rules the store holds anyway), and for a fresh fleet mirror of the bucket."""
    gc.collect()
    tracemalloc.start()
    for extra in range(CONSOLE_ADVANCE_NEW_MAX + 1):  # many new rules: a whole new view
        await redefine(store, 3 * RULES + extra, 1)
    for path in ("/ui/", "/ui/rules", "/ui/coverage", "/ui/coverage/layer.json",
                 f"/ui/rules/{rule_id(42)}"):
        await client.get(path)
    gc.collect()
    view_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    fresh = FleetSource(source.url, source.names)
    gc.collect()
    tracemalloc.start()
    await fresh.reports()
    gc.collect()
    mirror_mb = tracemalloc.get_traced_memory()[0] / 1e6
    tracemalloc.stop()
    await fresh.close()
    return view_mb, mirror_mb


async def measure(store: DatabaseRuleStore, seeding: float, runs: int) -> None:
    names = NatsNames(f"bench{uuid.uuid4().hex[:8]}")
    head = await store.repo.head_revision()
    started = asyncio.Event()
    reporting = asyncio.create_task(put_reports(names, head, started))
    await asyncio.wait_for(started.wait(), 60)
    source = FleetSource(NATS_URL, names)
    transport = httpx.ASGITransport(app=create_master_app(store, fleet=source,
                                                         freeze_gc=True))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            await signed_in(client)
            overview = (await client.get("/ui/")).text  # first copy of the bucket
            shown = overview.count("<tr") - overview.count("<thead><tr")
            assert len(await source.reports()) == WORKERS, "the mirror misses reports"
            collections = Collections()
            gc.callbacks.append(collections)
            lines = []
            for path in PAGES:
                samples, size = await page_samples(client, path, runs)
                lines.append(row(f"`{path}`", samples, size, CPU.pop(path)[1:]))
            gc.callbacks.remove(collections)
            after: dict[str, list[float]] = {path: [] for path in CHANGED}
            redefined: list[float] = []
            added: list[float] = []
            reloaded: list[float] = []
            for n in range(AFTER_CHANGE):
                for path in CHANGED:
                    await store.set_state(rule_id(3 + n), RuleState(
                        StateName.DISABLED, reason=f"bench change {n} {path}"), "bench")
                    after[path].append((await timed_get(client, path))[0])
                await redefine(store, 3 + n, 2)
                redefined.append((await timed_get(client, "/ui/rules"))[0])
                await redefine(store, RULES + n, 1)
                added.append((await timed_get(client, "/ui/rules"))[0])
                for extra in range(CONSOLE_ADVANCE_NEW_MAX + 1):
                    await redefine(store, 2 * RULES + n * 100 + extra, 1)
                reloaded.append((await timed_get(client, "/ui/rules"))[0])
            floor = []
            for _ in range(AFTER_CHANGE):
                start = time.perf_counter()
                await store.load_compiled()
                floor.append(time.perf_counter() - start)
            per_key = [await per_key_read(names) for _ in range(3)]
            view_mb, mirror_mb = await memory_of_caches(store, source, client)
    finally:
        await cancel_and_wait(reporting)
        await source.close()
        await drop_bucket(names)
    load = os.getloadavg()
    print(f"### Console pages\n\n`{COMMAND}` (Python {sys.version.split()[0]}; load "
          f"average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at the end): {RULES:,} "
          f"synthetic rules, {SILENCED} silenced with an end, {SCOPED} scoped clips, "
          f"{HISTORY:,} history entries, on in-memory SQLite (seeded in {seeding:.0f} s); "
          f"{WORKERS:,} workers' reports in a JetStream KV bucket of the local NATS, put "
          f"again every {FLEET_REPORT_INTERVAL:.0f} s as workers do, read by the master's "
          "`FleetSource` (the "
          f"overview listed {shown:,} table rows). Server time of {runs} requests per page "
          "through the whole app, signed in as an admin, after one warm-up request; CPU: "
          "this process's CPU time per request (all threads), less sensitive to the other "
          "jobs on the machine than the wall time.\n")
    print("| page | median | p95 | max | bytes | CPU median |")
    print("|---|---:|---:|---:|---:|---:|")
    for line in lines:
        print(line)
    for path, samples in after.items():
        print(row(f"`{path}` right after a `state set` (the view brought forward from the "
                  "change log)", samples))
    print(row("`/ui/rules` right after a rule's definition changed (brought forward)",
              redefined))
    print(row("`/ui/rules` right after a new rule (brought forward)", added))
    print(row(f"`/ui/rules` right after {CONSOLE_ADVANCE_NEW_MAX + 1} new rules (the whole "
              "pack loaded again)", reloaded))
    print(row("(reference: `store.load_compiled()` alone)", floor))
    print(row(f"(reference: listing and fetching the {WORKERS:,} keys, the former "
              "per-page read)", per_key))
    pauses = collections.pauses
    print(f"\nFull garbage collections during the {runs * len(PAGES)} page requests above: "
          f"{len(pauses)}" + (f", {percentile(pauses, 50) * 1e3:,.0f} ms median, "
                              f"{max(pauses) * 1e3:,.0f} ms longest" if pauses else "") + ".")
    print(f"\nMemory traced for a whole new rules view and its derived pages: {view_mb:.1f} MB; "
          f"for a fresh mirror of the {WORKERS:,} reports: {mirror_mb:.1f} MB.")


async def page_samples(client: httpx.AsyncClient, path: str,
                       runs: int) -> tuple[list[float], int]:
    await timed_get(client, path)  # warm-up: a derived page is computed once per revision
    samples, size = [], 0
    for _ in range(runs):
        elapsed, size = await timed_get(client, path)
        samples.append(elapsed)
    return samples, size


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    started = time.perf_counter()
    log(f"seeding {RULES:,} rules ...")
    store = await seeded()
    try:
        await measure(store, time.perf_counter() - started, args.runs)
    finally:
        await store.stop()


if __name__ == "__main__":
    asyncio.run(main())
