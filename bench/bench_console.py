"""The console's pages over 10,000 rules: server time per page, through the whole ASGI app
(session and token check, store read, view, template), on an SQLite database store.

Run: python -m bench.bench_console
Prints a Markdown section.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.synthetic import percentile, rule_id, rule_yaml  # noqa: E402
from decnet.swarm.console.app import templates  # noqa: E402
from decnet.swarm.console.fleet import FleetRow, fleet_rows  # noqa: E402
from decnet.swarm.console.mount import create_master_app  # noqa: E402
from decnet.swarm.console.sessions import Sessions  # noqa: E402
from decnet.ttp.rules.compiler import compile_rule  # noqa: E402
from decnet.ttp.store.database import DatabaseRuleStore  # noqa: E402
from decnet.ttp.store.sql.tokens import TokenTable  # noqa: E402
from decnet.vocabulary import RuleState, Scope, StateName, utcnow  # noqa: E402

COMMAND = "python -m bench.bench_console"
RULES = 10_000
SILENCED = 500
SCOPED = 200
RUNS = 15
PAGES = ("/ui/", "/ui/rules", "/ui/rules?q=synthetic_99&state=enabled",
         "/ui/rules?scoped=yes", f"/ui/rules/{rule_id(42)}", "/ui/history",
         "/ui/coverage", "/ui/coverage/layer.json")


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
    await TokenTable(store.repo).create("bench", "admin", "dttp_bench", None)
    return store


async def measure(store: DatabaseRuleStore, seeding: float) -> None:
    transport = httpx.ASGITransport(app=create_master_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        login = (await client.get("/ui/login")).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login)
        assert csrf is not None
        reply = await client.post("/ui/login", data={"token": "dttp_bench",
                                                      "csrf_token": csrf.group(1)})
        assert reply.status_code == 303, reply.text
        workers = len(await fleet_rows(None, None))
        print(f"### Console pages\n\n`{COMMAND}` (Python {sys.version.split()[0]}): "
              f"{RULES:,} synthetic rules, {SILENCED} silenced with an end, "
              f"{SCOPED} scoped clips, {SILENCED + SCOPED} history entries, on in-memory "
              f"SQLite (seeded in {seeding:.0f} s); server time of {RUNS} requests per page "
              "through the whole app, signed in as an admin. "
              + ("No fleet status module is wired, so the overview shows no workers."
                 if workers == 0 else f"{workers:,} workers' reports.") + "\n")
        print("| page | median | p95 | bytes |")
        print("|---|---:|---:|---:|")
        floor = []
        for _ in range(RUNS):
            start = time.perf_counter()
            await store.load_compiled()
            floor.append(time.perf_counter() - start)
        print(f"| (reference: `store.load_compiled()` alone) | "
              f"{percentile(floor, 50) * 1e3:,.0f} ms | {percentile(floor, 95) * 1e3:,.0f} ms "
              "| |")
        for path in PAGES:
            samples = []
            size = 0
            for _ in range(RUNS):
                start = time.perf_counter()
                reply = await client.get(path)
                samples.append(time.perf_counter() - start)
                assert reply.status_code == 200, (path, reply.status_code)
                size = len(reply.content)
            print(f"| `{path}` | {percentile(samples, 50) * 1e3:,.0f} ms | "
                  f"{percentile(samples, 95) * 1e3:,.0f} ms | {size:,} |")
        if workers == 0:
            samples = fleet_template(1_000)
            print(f"| (overview template alone, 1,000 synthetic worker rows) | "
                  f"{percentile(samples, 50) * 1e3:,.0f} ms | "
                  f"{percentile(samples, 95) * 1e3:,.0f} ms | |")


def fleet_template(workers: int) -> list[float]:
    """Render times of the overview's template alone with `workers` synthetic reports."""
    now = utcnow()
    fleet = [FleetRow(f"worker-{n:04d}", 1000 - n % 7, n % 7, f"{n:064x}",
                      now - timedelta(seconds=n % 30)) for n in range(workers)]
    template = templates().get_template("overview.html")
    session = Sessions().new("bench", "admin")
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        template.render(session=session, path="/ui/", now=now, head=1000, rule_count=RULES,
                        silences=[], fleet=fleet)
        samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    started = time.perf_counter()
    store = await seeded()
    try:
        await measure(store, time.perf_counter() - started)
    finally:
        await store.stop()


if __name__ == "__main__":
    asyncio.run(main())
