"""`evaluate_body`: one event's failure is its own error entry, never the batch's."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from decnet.swarm.http.batch import evaluate_body
from decnet.swarm.http.limits import HttpLimits
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, Tag
from decnet.ttp.rules.loader import load_directory

SHIPPED = Path(__file__).resolve().parents[3] / "rules" / "ttp"


class BrokenOnOneEvent(RuleEngine):
    """The shipped engine, except that evaluating source_id `boom` raises (a rule bug)."""

    def evaluate(self, event: Event | Mapping[str, Any]) -> list[Tag]:
        assert isinstance(event, Event)
        if event.source_id == "boom":
            raise KeyError("a bug")
        return super().evaluate(event)


def engine() -> RuleEngine:
    rules = load_directory(SHIPPED).rules
    return BrokenOnOneEvent([rules["R0001"]], background=False)


def uname(source_id: str) -> dict[str, Any]:
    return {"source_kind": "command", "source_id": source_id,
            "payload": {"command_text": "uname -a"}}


def test_an_evaluation_failure_is_an_entry_and_the_others_keep_their_tags() -> None:
    body = orjson.dumps([uname("a"), uname("boom"), uname("c")])
    outcome = evaluate_body(engine(), body, HttpLimits())
    assert outcome.status == 207
    document = json.loads(outcome.body)
    assert document["errors"] == [{"index": 1, "error": "evaluation failed: KeyError"}]
    assert [t["source_id"] for t in document["tags"]] == ["a", "c"]
    assert outcome.evaluation_failures == 1


def test_a_single_event_that_fails_is_a_207_too() -> None:
    outcome = evaluate_body(engine(), orjson.dumps(uname("boom")), HttpLimits())
    assert outcome.status == 207
    assert json.loads(outcome.body)["errors"][0]["index"] == 0


def test_valid_input_keeps_the_plain_array() -> None:
    outcome = evaluate_body(engine(), orjson.dumps([uname("a"), uname("b")]), HttpLimits())
    assert outcome.status == 200
    assert [t["source_id"] for t in json.loads(outcome.body)] == ["a", "b"]
    assert outcome.headers == {"X-Decnet-TTP-Event-Errors": "0",
                               "X-Decnet-TTP-Tags-Omitted": "0"}
