"""One `POST /events` body in, one bounded response out; runs off the event loop.

The response to a body that was a JSON array of events is, for compatibility, the
JSON array of their tags (200) when every event was evaluated and every tag fits.
Otherwise it is 207 with an object:

    {"tags": [...], "errors": [{"index": 3, "error": "..."}, ...],
     "truncated": {"tags_omitted": 120, "from_index": 41} | null}

`errors` has one entry per event that could not be read or evaluated (the
other events keep their tags); `truncated` says how many tags did not fit the response
caps and the first event that lost one (send the rest again from there). The body is
never larger than `HttpLimits.response_bound(events)`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from decnet.swarm.http.hits import TagTally
from decnet.swarm.http.limits import HttpLimits
from decnet.ttp.constants import MAX_EVENT_ERROR_CHARS
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError
from decnet.ttp.engine.jsonio import JSONInputError, dump_tag, parse_json
from decnet.ttp.inputs import parse_body

log = logging.getLogger(__name__)

@dataclass(slots=True)
class BatchOutcome:
    """The HTTP answer to one body, with the counts `/metrics` keeps."""

    status: int
    body: bytes
    events: int = 0
    tags: int = 0
    tags_omitted: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    evaluation_failures: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Decnet-TTP-Event-Errors": str(len(self.errors)),
                "X-Decnet-TTP-Tags-Omitted": str(self.tags_omitted)}


def refusal(status: int, reason: str, **extra: Any) -> BatchOutcome:
    return BatchOutcome(status, orjson.dumps({"error": reason[:MAX_EVENT_ERROR_CHARS], **extra}))


def evaluate_body(engine: RuleEngine, body: bytes, limits: HttpLimits,
                  log_format: str | None = None,
                  tally: TagTally | None = None) -> BatchOutcome:
    """Decode, validate, evaluate and encode one request body within `limits`; every tag
    emitted (in the response or past its caps) is counted in `tally`.

    With `log_format` the body is honeypot log records (`decnet.ttp.inputs`): the answer
    is always the object form, with `skipped` (unknown record kinds and their counts).
    """
    if log_format is not None:
        return _evaluate_records(engine, body, limits, log_format, tally)
    try:
        data = parse_json(body)
    except JSONInputError as exc:
        return refusal(400, str(exc))
    if not isinstance(data, list):
        try:
            event = Event.from_mapping(data)
        except EventError as exc:
            return refusal(422, str(exc), index=None)
        items: list[Any] = [event]
    elif len(data) > limits.max_events:
        return refusal(413, f"{len(data)} events; at most {limits.max_events} per request")
    else:
        items = data
    return _evaluate_items(engine, items, limits, tally=tally)


def _evaluate_records(engine: RuleEngine, body: bytes, limits: HttpLimits,
                      log_format: str, tally: TagTally | None) -> BatchOutcome:
    parsed = parse_body(body, log_format)
    if len(parsed.events) > limits.max_events:
        return refusal(413, f"{len(parsed.events)} events; at most {limits.max_events} "
                            "per request")
    outcome = _evaluate_items(engine, parsed.events, limits, always_object=True,
                              skipped=dict(parsed.unknown),
                              read_errors=[e.as_dict() for e in parsed.errors],
                              tally=tally)
    return outcome


def _evaluate_items(engine: RuleEngine, items: list[Any], limits: HttpLimits, *,
                    always_object: bool = False, skipped: dict[str, int] | None = None,
                    read_errors: list[dict[str, Any]] | None = None,
                    tally: TagTally | None = None) -> BatchOutcome:
    outcome = BatchOutcome(200, b"", events=len(items))
    if read_errors:
        outcome.errors.extend(read_errors)
    parts: list[bytes] = []
    size = 2  # the array's brackets
    first_omitted: int | None = None
    for index, item in enumerate(items):
        try:
            event = item if isinstance(item, Event) else Event.from_mapping(item)
        except EventError as exc:
            _fail(outcome, index, str(exc))
            continue
        try:
            tags = engine.evaluate(event)
        except Exception as exc:  # a rule or engine bug must cost this event only
            log.warning("evaluating an event failed: %s", type(exc).__name__, exc_info=True)
            outcome.evaluation_failures += 1
            _fail(outcome, index, f"evaluation failed: {type(exc).__name__}")
            continue
        if tally is not None and tags:
            tally.add(tags)
        for tag in tags:
            if first_omitted is not None or len(parts) >= limits.max_response_tags:
                first_omitted = index if first_omitted is None else first_omitted
                outcome.tags_omitted += 1
                continue
            encoded = dump_tag(tag)
            if size + len(encoded) + 1 > limits.max_response_bytes:
                first_omitted = index
                outcome.tags_omitted += 1
                continue
            parts.append(encoded)
            size += len(encoded) + 1
    outcome.tags = len(parts)
    tags_json = b"[" + b",".join(parts) + b"]"
    if not outcome.errors and first_omitted is None and not always_object:
        outcome.body = tags_json
        return outcome
    truncated = None if first_omitted is None else {
        "tags_omitted": outcome.tags_omitted, "from_index": first_omitted}
    if outcome.errors or first_omitted is not None:
        outcome.status = 207
    extra = b"" if skipped is None else b',"skipped":' + orjson.dumps(skipped)
    outcome.body = b"".join((b'{"tags":', tags_json, b',"errors":', orjson.dumps(outcome.errors),
                             b',"truncated":', orjson.dumps(truncated), extra, b"}"))
    return outcome


def _fail(outcome: BatchOutcome, index: int, reason: str) -> None:
    outcome.errors.append({"index": index, "error": reason[:MAX_EVENT_ERROR_CHARS]})
