"""Filesystem store: load time, memory, hot-reload latency, set_state latency.

Run: python -m bench.bench_filesystem
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench.synthetic import percentile, rule_id, rule_yaml, write_pack
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

COMMAND = "python -m bench.bench_filesystem"


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def load_time(count: int) -> tuple[float, float, float]:
    """Best of 3 wall-clock seconds to load + compile; traced and RSS growth in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        write_pack(Path(tmp), count)
        best = float("inf")
        for _ in range(3):
            gc.collect()
            start = time.perf_counter()
            rules = await FilesystemRuleStore(tmp).load_compiled()
            best = min(best, time.perf_counter() - start)
            assert len(rules) == count
            del rules
        gc.collect()
        rss_before = rss_bytes()
        tracemalloc.start()
        store = FilesystemRuleStore(tmp)
        await store.load_compiled()
        traced, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = rss_bytes() - rss_before
        del store
    return best, traced / 1e6, rss_growth / 1e6


async def reload_latency(mode: str, edits: int) -> list[float]:
    """Seconds from the write (or rename) returning to the change reaching a subscriber."""
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_pack(directory, 60)
        async with FilesystemRuleStore(directory) as store:
            changes = store.subscribe_changes()
            for i in range(edits):
                n = i % 60
                text = rule_yaml(n, version=i + 2)
                if mode == "new file":
                    n, text = 1000 + i, rule_yaml(1000 + i)
                target = directory / f"{rule_id(n)}.yaml"
                if mode == "rename into place":
                    scratch = directory / f".{rule_id(n)}.yaml.tmp"
                    scratch.write_text(text)
                    os.replace(scratch, target)
                    start = time.perf_counter()  # saved: the rename has returned
                else:
                    with target.open("w") as handle:
                        handle.write(text)
                    start = time.perf_counter()  # saved: the close has returned
                change = await asyncio.wait_for(anext(changes), 5)
                samples.append(time.perf_counter() - start)
                assert change.rule_id == rule_id(n)
    return samples


async def set_state_latency(count: int) -> list[float]:
    samples: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        write_pack(Path(tmp), 60)
        async with FilesystemRuleStore(tmp) as store:
            changes = store.subscribe_changes()
            for i in range(count):
                # disable, then clear: every call is a real change (clearing nothing is silent)
                state = RuleState(StateName.ENABLED if i % 2 else StateName.DISABLED)
                start = time.perf_counter()
                await store.set_state(rule_id((i // 2) % 60), state, "bench")
                await anext(changes)
                samples.append(time.perf_counter() - start)
    return samples


async def main() -> None:
    print(f"### Filesystem store\n\n`{COMMAND}` (Python {sys.version.split()[0]})\n")
    print("| rules | load + compile (best of 3) | memory (traced) | RSS growth |")
    print("|---:|---:|---:|---:|")
    for count in (60, 1_000, 10_000):
        seconds, traced, rss = await load_time(count)
        print(f"| {count:,} | {seconds * 1000:,.0f} ms | {traced:.1f} MB | {rss:.1f} MB |")
    print("\n| hot reload (save → subscriber), 300 edits | p50 | p99 |")
    print("|---|---:|---:|")
    for mode in ("in-place write", "rename into place", "new file"):
        samples = await reload_latency(mode, 300)
        print(f"| {mode} | {percentile(samples, 50) * 1e3:.2f} ms | "
              f"{percentile(samples, 99) * 1e3:.2f} ms |")
    samples = await set_state_latency(2000)
    print("\n| set_state (stamped, stored, announced), 2,000 calls | p50 | p99 |")
    print("|---|---:|---:|")
    print(f"| filesystem (in-process state) | {percentile(samples, 50) * 1e6:.0f} µs | "
          f"{percentile(samples, 99) * 1e6:.0f} µs |")


if __name__ == "__main__":
    asyncio.run(main())
