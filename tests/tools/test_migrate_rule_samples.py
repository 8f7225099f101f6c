"""tools/migrate_rule_samples.py: samples move into the rules, and a re-run changes nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from decnet.ttp.jobs.rule_tests import run_rule_tests
from decnet.ttp.rules.loader import load_directory

ROOT = Path(__file__).resolve().parents[2]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "migrate_rule_samples", ROOT / "tools" / "migrate_rule_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


RULE = """\
rule_id: R0001
rule_version: 1
name: uname
applies_to: [command]
match: {pattern: '\\buname\\b'}
emits: [{tactic: TA0007, technique_id: T1082, confidence: 0.5}]
"""
SAMPLES = """\
R0001:
  fires:
    - {source_kind: command, payload: {command_text: uname -a}}
    - {source_kind: command, payload: {command_text: "uname\\nid"}, expect: T1082}
    - [{source_kind: command, payload: {command_text: id}},
       {source_kind: command, payload: {command_text: uname}}]
    - sequence: [{source_kind: command, payload: {command_text: uname}}]
      expect: [T1082]
  quiet:
    - {source_kind: command, payload: {command_text: unamed}}
"""


def test_samples_become_tests_and_a_rerun_is_idempotent(tmp_path: Path) -> None:
    script = load_script()
    rules = tmp_path / "rules"
    rules.mkdir()
    # a stale tests block in the middle of the file is replaced, the rest kept
    (rules / "R0001.yaml").write_text(RULE.replace(
        "emits:", "tests:\n  fires: []\nemits:") + "author: me\n")
    samples = tmp_path / "samples.yaml"
    samples.write_text(SAMPLES)
    assert script.migrate(samples, rules) == []
    first = (rules / "R0001.yaml").read_text()
    assert first.startswith(RULE)
    assert "author: me\ntests:\n  fires:\n" in first
    assert '    - event: {source_kind: command, payload: {command_text: "uname\\nid"}}\n' \
           "      expect: [T1082]\n" in first
    assert script.migrate(samples, rules) == []
    assert (rules / "R0001.yaml").read_text() == first
    loaded = load_directory(rules)
    report = run_rule_tests(loaded.rules.values())
    assert [(r.kind, r.passed) for r in report.results] == [("fires", True)] * 4 + [
        ("quiet", True)]


def test_unknown_shapes_and_missing_rules_are_reported(tmp_path: Path) -> None:
    script = load_script()
    samples = tmp_path / "samples.yaml"
    samples.write_text("R0009:\n  fires: []\nR0001:\n  loud: []\n")
    (tmp_path / "R0001.yaml").write_text(RULE)
    problems = script.migrate(samples, tmp_path)
    assert len(problems) == 2
    assert "R0009: no rule file" in problems[0]
    assert "unknown sample keys ['loud']" in problems[1]
    assert (tmp_path / "R0001.yaml").read_text() == RULE
