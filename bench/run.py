"""Run every benchmark and write BENCHMARKS.md.

Run: make bench   (or: python -m bench.run [module ...])
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

MODULES = ("bench.bench_filesystem", "bench.bench_engine", "bench.bench_correlation",
           "bench.bench_database", "bench.bench_swarm", "bench.bench_rule_tests",
           "bench.bench_fallback", "bench.bench_attack", "bench.bench_inputs",
           "bench.bench_fleet", "bench.bench_console")
ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


MARKER = "<!-- everything below is rewritten by make bench -->"


def preamble(path: Path) -> str:
    """The hand-written part of BENCHMARKS.md (targets, profiles), kept across runs."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if MARKER in text:
            return text.split(MARKER, 1)[0]
    return "# Benchmarks\n\n"


def main() -> None:
    modules = sys.argv[1:] or list(MODULES)
    target = ROOT / "BENCHMARKS.md"
    sections = [
        preamble(target) + MARKER + "\n",
        f"Produced by `make bench` (`python -m bench.run`) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores ({cpu_model()}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}.\n"
        "The machine is shared and noisy: compare ratios measured in the same run.\n",
    ]
    for module in modules:
        print(f"running {module} ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True,
                              text=True, check=False)
        if done.returncode == 0:
            sections.append(done.stdout.strip() + "\n")
        else:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            sections.append(f"### {module}\n\nFailed (exit {done.returncode}):\n\n"
                            f"```text\n{tail}\n```\n")
        print(sections[-1], flush=True)
    target.write_text("\n".join(sections), encoding="utf-8")


if __name__ == "__main__":
    main()
