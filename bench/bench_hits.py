"""What counting the tags costs: on the worker's evaluation path (a request evaluated with
and without its `TagTally` and `TagHits.record`), the report's `tags` member (time and
size), and the master's parse and sum of 1,000 workers' reports.

Run: python -m bench.bench_hits
Prints a Markdown section.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.synthetic import percentile  # noqa: E402
from decnet.swarm.fleet_hits import sum_hits  # noqa: E402
from decnet.swarm.http.batch import evaluate_body  # noqa: E402
from decnet.swarm.http.hits import TagHits, TagTally  # noqa: E402
from decnet.swarm.http.limits import HttpLimits  # noqa: E402
from decnet.ttp.engine.engine import RuleEngine  # noqa: E402
from decnet.ttp.engine.events import Tag  # noqa: E402
from decnet.ttp.rules.loader import load_directory  # noqa: E402

COMMAND = "python -m bench.bench_hits"
SHIPPED = ROOT / "rules" / "ttp"
RUNS = 30
WORKERS = 1_000


def pack_events() -> list[dict[str, object]]:
    """Every shipped rule's firing test events, repeated to 1,000 events."""
    import yaml

    events: list[dict[str, object]] = []
    for path in sorted(SHIPPED.glob("*.yaml")):
        tests = yaml.safe_load(path.read_text(encoding="utf-8")).get("tests") or {}
        for case in tests.get("fires") or []:
            events.append(dict(case["event"]))
    return [{**events[n % len(events)], "source_id": f"e{n}"} for n in range(1_000)]


def timed(action: Callable[[], object], runs: int = RUNS) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def ms(samples: list[float]) -> str:
    return f"{percentile(samples, 50) * 1e3:,.2f} ms | {percentile(samples, 95) * 1e3:,.2f} ms"


def tag(rule_id: str, technique: str) -> Tag:
    return Tag(uuid=str(uuid.uuid4()), source_kind="command", source_id="c", rule_id=rule_id,
               rule_version=1, tactic="TA0007", technique_id=technique, sub_technique_id=None,
               confidence=0.5, evidence={"command_text": "uname -a; " + "x" * 300})


def hits_with(rules: int, techniques: int) -> TagHits:
    hits = TagHits()
    tally = TagTally()
    for n in range(rules):
        tally.add([tag(f"R{n:05d}", f"T{1000 + n % techniques}")])
    hits.record(tally, time.time())
    return hits


def main() -> None:
    rules = list(load_directory(SHIPPED).rules.values())
    engine = RuleEngine(rules, background=False)
    body = orjson.dumps(pack_events())
    limits = HttpLimits()
    hits = TagHits()

    def counted() -> None:
        tally = TagTally()
        evaluate_body(engine, body, limits, None, tally)
        hits.record(tally, time.time())

    def uncounted() -> None:
        evaluate_body(engine, body, limits)

    counted(), uncounted()  # warm up
    plain, with_counts = [], []
    for _ in range(RUNS):  # interleaved, so both see the same machine
        plain += timed(uncounted, 1)
        with_counts += timed(counted, 1)
    tags = len(orjson.loads(evaluate_body(engine, body, limits).body))
    load = os.getloadavg()
    print(f"### Tag counters\n\n`{COMMAND}` (Python {sys.version.split()[0]}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}), median and p95 of {RUNS} runs.\n")
    print(f"Worker, one request of 1,000 events of the shipped pack's tests ({tags} tags):\n")
    print("| evaluation | median | p95 |\n|---|---:|---:|")
    print(f"| without counting | {ms(plain)} |")
    print(f"| with `TagTally` and `TagHits.record` | {ms(with_counts)} |")
    overhead = percentile(with_counts, 50) / percentile(plain, 50) - 1
    print(f"\nCounting adds {overhead * 100:.1f} % to the median request.\n")
    print("| report's `tags` member | `report_fields` median | p95 | JSON bytes |")
    print("|---|---:|---:|---:|")
    reports = {}
    for label, n_rules, n_tech in (("50 rules, 30 techniques hit", 50, 30),
                                   ("10,000 rules, 600 techniques hit", 10_000, 600)):
        worker = hits_with(n_rules, n_tech)
        samples = timed(lambda w=worker: w.report_fields(time.time()))  # type: ignore[misc]
        encoded = orjson.dumps({"worker_id": "w", "tags": worker.report_fields(time.time())})
        reports[label] = encoded
        print(f"| {label} | {ms(samples)} | {len(encoded):,} |")
    print(f"\nMaster, {WORKERS:,} reports: parsing their JSON (what a mirror of the bucket "
          "does once per report) and `sum_hits` (what a page does):\n")
    print("| each report | parse median | p95 | `sum_hits` median | p95 |")
    print("|---|---:|---:|---:|---:|")
    for label, encoded in reports.items():
        blobs = [encoded] * WORKERS
        parse = timed(lambda b=blobs: [orjson.loads(x) for x in b], 5)  # type: ignore[misc]
        parsed = [orjson.loads(x) for x in blobs]
        summing = timed(lambda p=parsed: sum_hits(p, time.time()), 5)  # type: ignore[misc]
        print(f"| {label} | {ms(parse)} | {ms(summing)} |")

if __name__ == "__main__":
    main()
