"""Move rule samples from a samples file into the rules' own `tests:` blocks.

    python tools/migrate_rule_samples.py [--samples tests/rules/rule_samples.yaml]
                                         [--rules rules/ttp] [--delete]

The samples file maps a rule id to `fires:` and `quiet:` lists. An item is an event
(a mapping with `source_kind`, optionally carrying `expect`), a list of events (a
sequence), or a mapping with `sequence:` (or `events:`) and optional `expect:`. Each rule
file named in it gets its `tests:` block rewritten at the end of the file (any previous
block is replaced, nothing else in the file changes), so the script can be run again
after new samples arrive. Every rewritten file is compiled before it is written; `--delete`
removes the samples file once every rule took its samples.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from decnet.ttp.errors import RuleSetError
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.yaml_safe import parse_rule_yaml

_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def to_case(item: Any, where: str) -> dict[str, Any]:
    """One samples-file item as a test case (`event:` or `sequence:`, with `expect:`)."""
    if isinstance(item, list):
        return {"sequence": item}
    if not isinstance(item, dict):
        raise ValueError(f"{where}: not an event, a list of events or a sequence mapping")
    item = dict(item)
    expect = item.pop("expect", None)
    if "source_kind" in item:
        case: dict[str, Any] = {"event": item}
    elif "event" in item or "sequence" in item or "events" in item:
        case = {k: v for k, v in item.items() if k in ("event", "sequence")}
        if "events" in item:
            case["sequence"] = item["events"]
        unknown = set(item) - {"event", "sequence", "events"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    else:
        raise ValueError(f"{where}: not an event, a list of events or a sequence mapping")
    if expect:
        case["expect"] = expect if isinstance(expect, list) else [expect]
    return case


class _OneLineDumper(yaml.SafeDumper):
    """Strings with line breaks or control characters are double-quoted, on one line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    escaped = any(not c.isprintable() for c in value)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value,
                                   style='"' if escaped else None)


_OneLineDumper.add_representer(str, _str)


def flow(value: Any) -> str:
    """`value` as one line of YAML flow style."""
    text = yaml.dump(value, Dumper=_OneLineDumper, default_flow_style=True,
                     width=float("inf"), allow_unicode=True, sort_keys=False).strip()
    return text.removesuffix("\n...").strip()


def render(tests: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["tests:"]
    for kind in ("fires", "quiet"):
        if not tests.get(kind):
            continue
        lines.append(f"  {kind}:")
        for case in tests[kind]:
            first = True
            for key in ("event", "sequence", "expect"):
                if key in case:
                    lines.append(f"    {'- ' if first else '  '}{key}: {flow(case[key])}")
                    first = False
    return "\n".join(lines) + "\n"


def without_tests_block(text: str) -> str:
    """The rule text with its top-level `tests:` block (if any) removed."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.startswith("tests:"):
            skipping = True
            continue
        if skipping and _TOP_LEVEL_KEY.match(line):
            skipping = False
        if not skipping:
            kept.append(line)
    return "".join(kept).rstrip("\n") + "\n"


def migrate(samples_path: Path, rules_dir: Path) -> list[str]:
    """Rewrite the rule files; returns the problems (empty when every rule took its tests)."""
    samples = yaml.safe_load(samples_path.read_text(encoding="utf-8")) or {}
    problems: list[str] = []
    for rule_id, blocks in samples.items():
        path = rules_dir / f"{rule_id}.yaml"
        if not path.is_file():
            problems.append(f"{rule_id}: no rule file {path}")
            continue
        try:
            unknown = set(blocks) - {"fires", "quiet"}
            if unknown:
                raise ValueError(f"unknown sample keys {sorted(unknown)}")
            tests = {kind: [to_case(item, f"{rule_id}.{kind}.{n}")
                            for n, item in enumerate(blocks.get(kind) or [])]
                     for kind in ("fires", "quiet")}
        except ValueError as exc:
            problems.append(f"{rule_id}: {exc}")
            continue
        text = without_tests_block(path.read_text(encoding="utf-8")) + render(tests)
        try:
            compile_rule(text, source=str(path), expected_rule_id=rule_id)
        except RuleSetError as exc:
            problems.append(str(exc))
            continue
        written = parse_rule_yaml(text).data["tests"]
        expected = {k: v for k, v in tests.items() if v}
        if written != expected:
            problems.append(f"{rule_id}: the written tests do not read back as the samples")
            continue
        path.write_text(text, encoding="utf-8")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=Path("tests/rules/rule_samples.yaml"))
    parser.add_argument("--rules", type=Path, default=Path("rules/ttp"))
    parser.add_argument("--delete", action="store_true",
                        help="remove the samples file when every rule took its samples")
    args = parser.parse_args()
    problems = migrate(args.samples, args.rules)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.delete:
        args.samples.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
