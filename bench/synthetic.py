"""Synthetic rule packs and events for benchmarks."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """\
rule_id: {rule_id}
rule_version: {version}
name: synthetic_{n}
description: synthetic rule {n} for benchmarks
applies_to: [command]
match:
  pattern: '\\b(tool{n}|util{n}x)\\s+-{flag}\\s+\\S+'
emits:
  - {{tactic: TA0007, technique_id: T1082, confidence: 0.5}}
  - {{tactic: TA0002, technique_id: T1059, sub_technique_id: T1059.004, confidence: 0.7}}
evidence_fields: [command_text]
last_reviewed: "2026-11-01"
next_review: "2099-01-01"
"""


def rule_id(n: int) -> str:
    return f"S{n:06d}"


def rule_yaml(n: int, version: int = 1) -> str:
    return TEMPLATE.format(rule_id=rule_id(n), n=n, version=version, flag="abcdefgh"[n % 8])


def write_pack(directory: Path, count: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (directory / f"{rule_id(n)}.yaml").write_text(rule_yaml(n), encoding="utf-8")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
