"""The tag job's blocks: any block size and any number of processes give the same tags."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.jobs.tagging import TagJob
from decnet.ttp.rules.compiler import compile_rule

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "inputs"
LOGIN = """\
rule_id: R0001
rule_version: 1
name: login
applies_to: [auth_attempt]
match: {pattern: '.'}
emits:
  - {tactic: TA0006, technique_id: T1110, confidence: 0.3}
evidence_fields: [service]
"""


def tagged(data: bytes, *, jobs: int, block_bytes: int) -> tuple[bytes, int]:
    engine = RuleEngine([compile_rule(LOGIN, source="R0001.yaml")])
    sink = io.BytesIO()
    with TagJob(engine, fmt="cowrie", jobs=jobs, block_bytes=block_bytes) as job:
        summary = job.run([("log", io.BytesIO(data))], sink)
    return sink.getvalue(), summary.events


@pytest.mark.parametrize("block_bytes", [64, 700, 1 << 20])
@pytest.mark.parametrize("jobs", [1, 2])
def test_logins_learn_their_protocol_across_blocks(jobs: int, block_bytes: int) -> None:
    data = b"".join((FIXTURES / name).read_bytes()
                    for name in ("cowrie-2021.json", "cowrie-2025.json"))
    out, events = tagged(data, jobs=jobs, block_bytes=block_bytes)
    services = [orjson.loads(line)["evidence"].get("service") for line in out.splitlines()]
    assert services == ["ssh", "ssh", "ssh", "ssh", "telnet", "telnet", "ssh"]
    assert (out, events) == tagged(data, jobs=1, block_bytes=1 << 20)
