"""Spans: the documented hierarchy when tracing is on, nothing when it is off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from decnet import telemetry
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))

RULE = """\
rule_id: R0001
rule_version: 1
name: uname
applies_to: [command]
match: {pattern: '\\buname\\s+-a\\b'}
emits:
  - {tactic: TA0007, technique_id: T1082, confidence: 0.5}
"""


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setattr(trace, "get_tracer", _PROVIDER.get_tracer)
    monkeypatch.setenv("DECNET_DEVELOPER_TRACING", "1")
    assert telemetry.refresh()
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
    monkeypatch.delenv("DECNET_DEVELOPER_TRACING", raising=False)
    telemetry.refresh()


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in finished}


def parent_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.parent is not None and parent.context is not None
    return child.parent.span_id == parent.context.span_id


async def test_state_change_spans(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(RULE)
    async with FilesystemRuleStore(tmp_path) as store:
        await store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    named = by_name(spans.get_finished_spans())
    change = named["ttp.rule.state.change"]
    assert parent_of(named["ttp.store.write_state"], change)
    assert parent_of(named["ttp.rule.publish"], change)
    assert change.attributes is not None and change.attributes["ttp.rule_id"] == "R0001"


async def test_eval_spans_carry_ids_not_content(spans: InMemorySpanExporter,
                                                tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(RULE)
    engine = RuleEngine(await FilesystemRuleStore(tmp_path).load_compiled())
    secret = "uname -a; echo hunter2"
    tags = engine.evaluate({"source_kind": "command", "source_id": "c1",
                            "payload": {"command_text": secret}})
    assert len(tags) == 1
    named = by_name(spans.get_finished_spans())
    fire = named["ttp.rule.fire"]
    assert parent_of(fire, named["ttp.eval"])
    assert fire.attributes is not None and fire.attributes["ttp.rule_id"] == "R0001"
    for span in spans.get_finished_spans():
        assert all(secret not in str(v) for v in (span.attributes or {}).values())


async def test_no_spans_when_tracing_is_off(spans: InMemorySpanExporter,
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.delenv("DECNET_DEVELOPER_TRACING")
    assert not telemetry.refresh()
    (tmp_path / "R0001.yaml").write_text(RULE)
    async with FilesystemRuleStore(tmp_path) as store:
        await store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        RuleEngine(await store.load_compiled()).evaluate(
            {"source_kind": "command", "source_id": "c1",
             "payload": {"command_text": "uname -a"}})
    assert spans.get_finished_spans() == ()
