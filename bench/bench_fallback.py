"""The engine under attack: what a hostile event costs, with the regex fallback's bound.

Run: python -m bench.bench_fallback   (`make bench` runs it)
Prints a Markdown section.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from decnet.ttp.engine.engine import RuleEngine  # noqa: E402
from decnet.ttp.engine.events import Event  # noqa: E402
from decnet.ttp.engine.jsonio import dump_tag  # noqa: E402
from decnet.ttp.rules.bounded import STATS, step_limit  # noqa: E402
from decnet.ttp.rules.compiler import compile_rule  # noqa: E402
from decnet.ttp.rules.loader import load_directory  # noqa: E402
from decnet.ttp.rules.regex import compile_search  # noqa: E402

COMMAND = "python -m bench.bench_fallback"
PACK = ROOT / "rules" / "ttp"
RULE = """\
rule_id: {rule_id}
rule_version: 1
name: hostile_{rule_id}
applies_to: [command]
match:
  pattern: '{pattern}'
emits:
  - {{tactic: TA0002, technique_id: T1059, confidence: 0.7}}
evidence_fields: [command_text, user]
"""
FALLBACK_WORST = r"(?<!x)(a+)+$"   # no RE2 form; exponential backtracking
RE2_TWIN = r"(a+)+$"               # the same without the lookbehind: RE2, linear
FALLBACK_BENIGN = r"(?<!x)\broot\b(?!=)"
#: (fallback pattern, its RE2 twin, run length of `a` between `b!`s; 0: one run).
#: Long runs exhaust the JIT's stack at once; short runs make it count to the step
#: limit: `(?:a+a+)+$` on runs of 30 was among the slowest of 216 shapes tried (all
#: of the slowest within 10 % of each other: the step limit is what stops them).
HOSTILE_CASES = (
    (FALLBACK_WORST, RE2_TWIN, 0),
    (FALLBACK_WORST, RE2_TWIN, 12),
    (FALLBACK_WORST, RE2_TWIN, 10_000),
    (r"(?<!x)(a*)*b\d", r"(a*)*b\d", 12),
    (r"(?<!x)(?:a+a+)+$", r"(?:a+a+)+$", 30),
)


def poison(size: int, run: int) -> str:
    if not run:
        return "a" * (size - 1) + "b"
    return ("a" * run + "b!") * (size // (run + 2))


def per_call(fn: Callable[[], object], *, at_least: float = 0.2) -> float:
    """Median seconds per call over repeated rounds."""
    times: list[float] = []
    deadline = time.perf_counter() + at_least
    while len(times) < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return statistics.median(times)


def fallback_cost_section() -> None:
    benign = compile_search(FALLBACK_BENIGN)
    print("\nOne search per event; each cell is the median time of that search "
          "(the fallback stops at its step limit and counts no match).\n")
    print("| text | step limit | hostile fallback pattern | time | its RE2 twin | "
          "benign fallback pattern, same size |")
    print("|---|---:|---|---:|---:|---:|")
    for size in (1 << 10, 1 << 16, 1 << 20):
        plain = "user=" + "x" * (size - 10) + " root"
        benign_cost = per_call(lambda t=plain: benign.search(t))  # type: ignore[misc]
        for pattern, twin_source, run in HOSTILE_CASES:
            if run >= size:
                continue
            worst, twin = compile_search(pattern), compile_search(twin_source)
            assert worst.is_fallback and not twin.is_fallback
            text = poison(size, run)
            hits = STATS.limit_hits
            cost = per_call(lambda t=text, p=worst: p.search(t))  # type: ignore[misc]
            stopped = "stopped" if STATS.limit_hits > hits else "finished"
            re2_cost = per_call(lambda t=text, p=twin: p.search(t))  # type: ignore[misc]
            shape = f"runs of {run:,}" if run else "one run"
            print(f"| {len(text) / 1024:,.0f} KiB, {shape} | {step_limit(len(text)):,} | "
                  f"`{pattern}` | {cost * 1e3:.2f} ms ({stopped}) | {re2_cost * 1e3:.3f} ms | "
                  f"{benign_cost * 1e3:.3f} ms |")


def flood_section() -> None:
    pack = list(load_directory(PACK).rules.values())
    hostile = [compile_rule(RULE.format(rule_id="H0001", pattern=FALLBACK_WORST),
                            source="H0001.yaml"),
               compile_rule(RULE.format(rule_id="H0002", pattern=FALLBACK_BENIGN),
                            source="H0002.yaml")]
    engine = RuleEngine(pack + hostile)
    poison = [Event("command", f"p{i}", {"command_text": "a" * 19_999 + "b"})
              for i in range(200)]
    benign = Event("command", "b", {"command_text": "sudo su root && wget http://x/a.sh"})
    searches, hits = STATS.searches, STATS.limit_hits
    t0 = time.perf_counter()
    worst = 0.0
    for event in poison:
        t1 = time.perf_counter()
        engine.evaluate(event)
        worst = max(worst, time.perf_counter() - t1)
    total = time.perf_counter() - t0
    fired = sorted(t.rule_id for t in engine.evaluate(benign))
    print(f"\nFlood: 200 events of 20 KB `aaa…ab` (4 MB) through the pack plus "
          f"`{FALLBACK_WORST}` and `{FALLBACK_BENIGN}`: {total:.2f} s in all, the longest "
          f"event {worst * 1e3:.1f} ms; {STATS.searches - searches} fallback searches, "
          f"{STATS.limit_hits - hits} stopped at the step limit; the next benign event is "
          f"tagged by {', '.join(fired) if fired else 'nothing'} (H0002 included: nothing "
          f"is quarantined).")
    big = Event("command", "big", {"command_text": "aaaa", "user": "u" * (1 << 20)})
    tags = engine.evaluate(big)
    print(f"\nA 1 MiB `user` field copied into evidence: {len(tags)} tag(s) of "
          f"{max(len(dump_tag(t)) for t in tags):,} bytes each (`dump_tag`).")


COLD = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    from decnet.ttp.engine.engine import RuleEngine
    from decnet.ttp.engine.events import Event
    from decnet.ttp.rules.compiler import compile_rule
    t1 = time.perf_counter()
    rule = compile_rule('''{rule}''', source="C0001.yaml")
    engine = RuleEngine([rule])
    t2 = time.perf_counter()
    tags = engine.evaluate(Event("command", "1", {{"command_text": "xabc"}}))
    t3 = time.perf_counter()
    print(len(tags), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
""")


def cold_start_section() -> None:
    rule = RULE.format(rule_id="C0001", pattern=r"(?<!y)x(?=abc)abc(?!d)")
    runs = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", COLD.format(rule=rule)], cwd=ROOT,
                              capture_output=True, text=True, check=True)
        tagged, _imports, load, first = done.stdout.split()
        runs.append((int(tagged), float(load), float(first)))
    print(f"\nCold start (a new process, rule `(?<!y)x(?=abc)abc(?!d)`, 3 runs): the "
          f"first event is tagged in {sum(r[0] > 0 for r in runs)} of 3 runs; compiling "
          f"the rule (RE2 check, PCRE2 translation and JIT) "
          f"{max(r[1] for r in runs):.1f} ms at most, the first event "
          f"{max(r[2] for r in runs):.2f} ms at most.")


def main() -> None:
    print("### Under attack: the regex fallback\n")
    print(f"Command: `{COMMAND}`. Fallback = patterns RE2 cannot run, searched by PCRE2 "
          f"(JIT) within a step limit that grows with the text's length class.")
    fallback_cost_section()
    flood_section()
    cold_start_section()


if __name__ == "__main__":
    main()
