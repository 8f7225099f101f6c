"""A worker's CPU per pushed change: from a JetStream message's bytes to the engine.

What a real worker does for each message of the change stream, in one process and
with no network: `decode_entry` → `Tail.apply_pushed` → the store's view and fan-out →
`LiveRules` → the engine's copy-on-write index and its prefilter compaction (run on the
event loop, as in a worker). A `set_state` and a saved definition are timed apart, with
the shipped pack (85 rules) and with 10,000 synthetic rules on a SQLite file.

    python -m bench.bench_apply [--changes N] [--profile]

CPU is the process's (`time.process_time`), per change, p50 / mean, including the
compaction a definition change triggers (waited for before the next change).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import create_async_engine

from bench.bench_database import sqlite_file
from bench.synthetic import percentile, rule_id, rule_yaml
from decnet.swarm.live import LiveRules
from decnet.ttp.engine.engine import COMPACTION_DEBOUNCE_SECONDS, RuleEngine
from decnet.ttp.store.base import DEFINITION, STATE, RuleState, StateName
from decnet.ttp.store.database.jetstream import decode_entry, encode_entry
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql.models import RevisionRow, RuleRow
from decnet.ttp.store.sql.rows import LogEntry, StoredRule, StoredState

PACK = Path(__file__).resolve().parent.parent / "rules"
VERSION = re.compile(r"^rule_version: *\d+", re.MULTILINE)


def shipped_pack() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8")
            for path in sorted(PACK.rglob("*.yaml"))}


def synthetic_pack(count: int) -> dict[str, str]:
    return {rule_id(n): rule_yaml(n) for n in range(count)}


async def bulk_load(url: str, pack: dict[str, str]) -> None:
    engine = create_async_engine(url)
    try:
        now = datetime.now(UTC)
        rows = [{"rule_id": rid, "rule_version": 1, "source_path": f"{rid}.yaml",
                 "yaml_content": text, "updated_at": now, "updated_by": "bench",
                 "revision": 1} for rid, text in pack.items()]
        async with engine.begin() as conn:
            for start in range(0, len(rows), 1000):
                await conn.execute(insert(RuleRow), rows[start:start + 1000])
            await conn.execute(update(RevisionRow).values(revision=1))
    finally:
        await engine.dispose()


def messages(pack: dict[str, str], identity: str, first: int, count: int,
             kind: str) -> list[bytes]:
    """`count` encoded entries from revision `first` on: state changes or new versions
    of the pack's rules (round robin over the pack)."""
    ids = sorted(pack)
    now = datetime.now(UTC)
    out = []
    for n in range(count):
        revision = first + n
        rid = ids[n * 7919 % len(ids)]
        if kind == "state":
            state = RuleState(StateName.DISABLED if n % 2 else StateName.ENABLED,
                              reason=f"bench {n}", set_by="bench", set_at=now)
            entry = LogEntry(revision, rid, STATE, None, StoredState(revision, state))
        else:
            text = VERSION.sub(f"rule_version: {n + 2}", pack[rid], count=1)
            row = StoredRule(rid, n + 2, f"{rid}.yaml", text, now, "bench", revision)
            entry = LogEntry(revision, rid, DEFINITION, row, None)
        out.append(encode_entry(entry, identity))
    return out


async def settle(live: LiveRules, revision: int) -> None:
    """Until the follower has applied `revision` and the prefilter holds no pending rule
    (looking seldom: the looks are CPU of this process too)."""
    while live.revision != revision:  # noqa: ASYNC110 - counters, no event to wait on
        await asyncio.sleep(0)
    if live.engine.pending:
        await asyncio.sleep(COMPACTION_DEBOUNCE_SECONDS)
    while live.engine.pending:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def measure(pack: dict[str, str], changes: int, kind: str,
                  profile: cProfile.Profile | None) -> list[float]:
    async with sqlite_file() as url:
        await bulk_load(url, pack)
        store = DatabaseRuleStore(url)
        await store.start()
        live = LiveRules(store, RuleEngine())
        follower = asyncio.create_task(live.run())
        try:
            await live.wait_ready()
            tail = store.tail
            identity, watermark = tail.identity, tail.watermark
            assert identity is not None and watermark is not None
            batch = messages(pack, identity, watermark + 1, changes, kind)
            spent = []
            for data in batch:
                start = time.process_time()
                if profile:
                    profile.enable()
                entry_identity, entry = decode_entry(data)
                assert tail.apply_pushed(entry_identity, entry)
                await settle(live, entry.revision)
                if profile:
                    profile.disable()
                spent.append(time.process_time() - start)
            assert len(live.engine.rules) == len(pack)
            return spent
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await store.stop()


def cell(values: list[float]) -> str:
    return (f"{percentile(values, 50) * 1000:.3f} / "
            f"{sum(values) / len(values) * 1000:.3f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--large", type=int, default=10_000,
                        help="rules in the large pack (synthetic)")
    parser.add_argument("--profile", action="store_true",
                        help="print where the time goes (cProfile, top functions)")
    args = parser.parse_args()
    packs: list[tuple[str, Callable[[], dict[str, str]]]] = [
        ("shipped pack (85)", shipped_pack),
        (f"synthetic {args.large:,}", lambda: synthetic_pack(args.large)),
    ]
    one, five, _ = os.getloadavg()
    print(f"load average {one:.2f} / {five:.2f}; {args.changes} changes each\n")
    print("| rules | change | CPU ms per change p50 / mean |")
    print("|---|---|---:|")
    for label, make in packs:
        pack = make()
        for kind in ("state", "definition"):
            profile = cProfile.Profile() if args.profile else None
            spent = await measure(pack, args.changes, kind, profile)
            print(f"| {label} | {kind} | {cell(spent)} |", flush=True)
            if profile is not None:
                pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    asyncio.run(main())
