"""One `POST /events` body in, one bounded response out; runs off the event loop.

The response to a body that was a JSON array of events is, for compatibility, the
JSON array of their tags (200) when every event was evaluated and every tag fits.
Otherwise it is 207 with an object:

    {"tags": [...], "errors": [{"index": 3, "error": "..."}, ...],
     "truncated": {"tags_omitted": 120, "from_index": 41} | null}

`errors` has one entry per event that could not be read, evaluated or encoded (the
other events keep their tags); `truncated` says how many tags did not fit the response
caps and the first event that lost one (send the rest again from there). The body is
never larger than `HttpLimits.response_bound(events)`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from decnet.swarm.http.limits import HttpLimits
from decnet.ttp.constants import MAX_EVENT_ERROR_CHARS
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError, Tag

log = logging.getLogger(__name__)

#: A number orjson may not hold exactly (past 64 bits); a string's digits match too.
_LONG_DIGITS = re.compile(rb"\d{19}")


class TagEncodeError(ValueError):
    """A tag that cannot be written as JSON (e.g. nesting deeper than any encoder goes)."""


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


def decode(body: bytes) -> Any:
    """The JSON value of `body`; `ValueError` when it is not JSON.

    UTF-8 only (RFC 8259). orjson, unless the body has a run of 19+ digits (orjson
    reads an integer past 64 bits as a float); that body, and one orjson refuses but
    JSON allows (lone surrogate escapes), is read by the standard library: exactly.
    """
    first: ValueError | None = None
    if not _LONG_DIGITS.search(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            first = exc
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    except RecursionError:
        raise ValueError(str(first or "nested too deep")) from None
    except ValueError as exc:
        raise ValueError(str(first or exc)) from None


def encode_tag(tag: Tag) -> bytes:
    """One tag as JSON; `TagEncodeError` when it cannot be."""
    data = tag.as_dict()
    try:
        return orjson.dumps(data)
    except TypeError:
        pass
    try:  # exact big integers and lone surrogates (escaped), at the stdlib's pace
        return json.dumps(data, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")
    except (ValueError, TypeError, RecursionError) as exc:
        raise TagEncodeError(type(exc).__name__) from None


def evaluate_body(engine: RuleEngine, body: bytes, limits: HttpLimits) -> BatchOutcome:
    """Decode, validate, evaluate and encode one request body within `limits`."""
    try:
        data = decode(body)
    except ValueError as exc:
        return refusal(400, f"malformed JSON: {exc}")
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
    return _evaluate_items(engine, items, limits)


def _evaluate_items(engine: RuleEngine, items: list[Any], limits: HttpLimits) -> BatchOutcome:
    outcome = BatchOutcome(200, b"", events=len(items))
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
        unencodable: list[str] = []
        for tag in tags:
            if first_omitted is not None or len(parts) >= limits.max_response_tags:
                first_omitted = index if first_omitted is None else first_omitted
                outcome.tags_omitted += 1
                continue
            try:
                encoded = encode_tag(tag)
            except TagEncodeError as exc:
                unencodable.append(str(exc))
                continue
            if size + len(encoded) + 1 > limits.max_response_bytes:
                first_omitted = index
                outcome.tags_omitted += 1
                continue
            parts.append(encoded)
            size += len(encoded) + 1
        if unencodable:
            _fail(outcome, index, f"{len(unencodable)} tag(s) could not be encoded as JSON "
                                  f"({unencodable[0]})")
    outcome.tags = len(parts)
    tags_json = b"[" + b",".join(parts) + b"]"
    if not outcome.errors and first_omitted is None:
        outcome.body = tags_json
        return outcome
    truncated = None if first_omitted is None else {
        "tags_omitted": outcome.tags_omitted, "from_index": first_omitted}
    outcome.status = 207
    outcome.body = b"".join((b'{"tags":', tags_json, b',"errors":', orjson.dumps(outcome.errors),
                             b',"truncated":', orjson.dumps(truncated), b"}"))
    return outcome


def _fail(outcome: BatchOutcome, index: int, reason: str) -> None:
    outcome.errors.append({"index": index, "error": reason[:MAX_EVENT_ERROR_CHARS]})
