"""Rule tests and coverage: what a `tests:` block costs at compile time, and how long
`decnet-ttp rules test` and a coverage layer take on the shipped pack and on a large one.

Run: python bench/bench_rule_tests.py   (or python -m bench.bench_rule_tests)
Prints a Markdown section.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from decnet.ttp.coverage import layer_from_rules  # noqa: E402
from decnet.ttp.jobs.rule_tests import run_rule_tests  # noqa: E402
from decnet.ttp.rules.compiled import CompiledRule  # noqa: E402
from decnet.ttp.rules.compiler import compile_rule  # noqa: E402

COMMAND = "python bench/bench_rule_tests.py"
PACK = ROOT / "rules" / "ttp"
COPIES = 20
_TESTS_BLOCK = re.compile(r"^tests:\n(?:[ #].*\n|\n)*", re.MULTILINE)


def best_of(runs: int, *works: Callable[[], object]) -> list[float]:
    """Best time of each of `works`, run in turn `runs` times (so they share the noise)."""
    best = [float("inf")] * len(works)
    for _ in range(runs):
        for n, work in enumerate(works):
            start = time.perf_counter()
            work()
            best[n] = min(best[n], time.perf_counter() - start)
    return best


def pack_texts(copies: int) -> list[str]:
    """The pack's rule files, `copies` times over with distinct rule ids."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(PACK.glob("*.yaml"))]
    return [re.sub(r"^rule_id: (\w+)$", rf"rule_id: \1_{n}", text, count=1, flags=re.M)
            for n in range(copies) for text in texts]


def compile_all(texts: list[str]) -> list[CompiledRule]:
    return [compile_rule(text, source="bench") for text in texts]


def main() -> None:
    print(f"### Rule tests and coverage\n\n`{COMMAND}` (Python {sys.version.split()[0]}); "
          "best of 7 (compile, alternating) and of 5.\n")
    print("| rules | compile, tests stripped | compile, with tests | ratio | "
          "`run_rule_tests` (cases) | `layer_from_rules` |")
    print("|---:|---:|---:|---:|---:|---:|")
    for copies in (1, COPIES):
        texts = pack_texts(copies)
        bare = [_TESTS_BLOCK.sub("", text) for text in texts]
        without, with_tests = best_of(7, partial(compile_all, bare), partial(compile_all, texts))
        rules = compile_all(texts)
        cases = len(run_rule_tests(rules).results)
        running, layer = best_of(5, partial(run_rule_tests, rules),
                                 partial(layer_from_rules, rules))
        print(f"| {len(texts):,} | {without * 1e3:,.1f} ms | {with_tests * 1e3:,.1f} ms | "
              f"{with_tests / without:.2f} | {running * 1e3:,.0f} ms ({cases:,}) | "
              f"{layer * 1e3:,.1f} ms |")


if __name__ == "__main__":
    main()
