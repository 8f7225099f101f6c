"""The worker's HTTP API: an ASGI app over a `LiveRules` view.

- `GET /healthz`: 503 until the rules are loaded, then 200.
- `GET /metrics`: Prometheus text, from a registry of this app's own.
- `GET /rules`: the live view, a JSON array sorted by rule_id (header
  `X-Decnet-TTP-Revision` carries the store revision it includes, when known);
  `GET /rules/{rule_id}`: one entry, 404 when the rule is not live.
  Each entry has `applied_at`: the wall-clock time (Unix seconds) this worker
  applied the rule's latest change, taken when it was applied.
- `GET /status`: one JSON object (ready, revision, counters).
- `POST /events`: one JSON event or an array of them -> a JSON array of tags.
  413 past the body limit, 400 on malformed JSON, 422 on a malformed event
  (with its index), 503 before the rules are loaded.
  `POST /events?format=auto|native|cowrie|opencanary` (or a body of type
  `application/x-ndjson`, read as `auto`): honeypot log records, one JSON value, an
  array or JSON lines -> `{"tags": [...], "errors": [{"index", "error"}],
  "skipped": {kind: count}}`; a bad record is an entry of `errors`, never the batch's.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Final

import orjson
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from decnet.swarm.live import LiveRules, last_sync_age, store_stat, store_statements
from decnet.ttp.constants import MAX_EVENT_BODY_BYTES
from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError
from decnet.ttp.inputs import FORMATS, parse_body
from decnet.ttp.rules.compiled import CompiledRule

log = logging.getLogger(__name__)

#: Default largest request body `POST /events` accepts.
MAX_BODY_BYTES: Final = MAX_EVENT_BODY_BYTES
REVISION_HEADER: Final = "X-Decnet-TTP-Revision"


def json_response(content: Any, status_code: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code,
                    media_type="application/json", headers=headers)


def error(status_code: int, reason: str, **extra: Any) -> Response:
    return json_response({"error": reason, **extra}, status_code)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def rule_view(rule: CompiledRule, applied_at: float | None) -> dict[str, Any]:
    """One entry of `GET /rules`."""
    held = rule.state
    effective = held.effective()
    return {
        "rule_id": rule.rule_id,
        "rule_version": rule.rule_version,
        "name": rule.name,
        "state": effective.state.value,
        "confidence_max": effective.confidence_max,
        "expires_at": _iso(effective.expires_at),
        "reason": effective.reason,
        "set_by": effective.set_by,
        "set_at": _iso(effective.set_at),
        "held_state": held.state.value,
        "yaml_sha256": hashlib.sha256(rule.source_yaml.encode("utf-8")).hexdigest(),
        "applied_at": applied_at,
    }


class LiveCollector(Collector):
    """Reads the live view at scrape time: no bookkeeping on the hot path."""

    def __init__(self, live: LiveRules) -> None:
        self.live = live

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        live = self.live
        engine = live.engine
        yield _gauge("decnet_ttp_ready", "1 once the rules are loaded", float(live.ready))
        yield _gauge("decnet_ttp_rules_loaded", "Rules in the engine", len(engine.rules))
        yield _counter("decnet_ttp_changes_applied", "Rule changes applied to the engine",
                       engine.changes_applied)
        yield _counter("decnet_ttp_full_loads", "Full reloads of the rules (start, resync)",
                       live.full_loads)
        yield _counter("decnet_ttp_events_evaluated", "Events evaluated", engine.events_evaluated)
        yield _counter("decnet_ttp_tags_emitted", "Tags emitted", engine.tags_emitted)
        yield _counter("decnet_ttp_poll_errors",
                       "Failed reads of the database by the tail (and failed loads)",
                       int(store_stat(live.store, "poll_errors", 0)) + live.load_errors)
        yield _counter("decnet_ttp_polls", "Polls of the database by the tail",
                       int(store_stat(live.store, "polls", 0)))
        yield _counter("decnet_ttp_notifications",
                       "PostgreSQL notifications that woke the tail",
                       int(store_stat(live.store, "notifications", 0)))
        statements = store_statements(live.store)
        if statements is not None:
            yield _counter("decnet_ttp_db_statements",
                           "SQL statements this process issued to the rule database",
                           statements)
        age = last_sync_age(live.store)
        if age is not None:
            yield _gauge("decnet_ttp_last_sync_age_seconds",
                         "Seconds since the last successful read of the database", age)
        if live.revision is not None:
            yield _gauge("decnet_ttp_revision", "Database revision the engine includes",
                         live.revision)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def metrics_registry(live: LiveRules) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(live))
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


async def read_body(request: Request, limit: int) -> bytes | Response:
    """The request body, or a 413/400 response; never reads more than `limit` + one chunk."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return error(413, f"request body larger than {limit} bytes")
        except ValueError:
            return error(400, "invalid Content-Length header")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return error(413, f"request body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        return error(400, "client disconnected")
    return b"".join(chunks)


def parse_events(data: Any) -> list[Event] | Response:
    """Validate a decoded body: an event object or an array of them."""
    if isinstance(data, list):
        events: list[Event] = []
        for index, item in enumerate(data):
            try:
                events.append(Event.from_mapping(item))
            except EventError as exc:
                return error(422, str(exc), index=index)
        return events
    try:
        return [Event.from_mapping(data)]
    except EventError as exc:
        return error(422, str(exc), index=None)


NDJSON: Final = "application/x-ndjson"


def log_format(request: Request) -> str | None:
    """The log format a `POST /events` names (`?format=`, or an NDJSON body: `auto`)."""
    fmt = request.query_params.get("format")
    if fmt is None and request.headers.get("content-type", "").startswith(NDJSON):
        return "auto"
    return fmt


def tag_log_records(engine: RuleEngine, body: bytes, fmt: str) -> Response:
    """Tags of a body of honeypot log records; each bad record is reported, not fatal."""
    if fmt not in FORMATS:
        return error(400, f"unknown format {fmt[:40]!r} (one of {', '.join(FORMATS)})")
    parsed = parse_body(body, fmt)
    errors = [problem.as_dict() for problem in parsed.errors]
    tags: list[dict[str, Any]] = []
    for event in parsed.events:
        try:
            tags.extend(tag.as_dict() for tag in engine.evaluate(event))
        except Exception as exc:  # a rule bug costs this event only
            log.exception("evaluating %s failed", event.source_id)
            errors.append({"source_id": event.source_id,
                           "error": f"evaluation failed: {type(exc).__name__}"})
    return json_response({"tags": tags, "errors": errors, "skipped": dict(parsed.unknown)})


def create_app(live: LiveRules, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    registry = metrics_registry(live)

    async def healthz(request: Request) -> Response:
        if not live.ready:
            return json_response({"status": "loading"}, 503)
        return json_response({"status": "ok", "rules": len(live.engine.rules)})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def status(request: Request) -> Response:
        return json_response(live.status())

    async def rules(request: Request) -> Response:
        # One read of each: the engine's index is swapped whole, never mutated.
        revision = live.revision
        snapshot = live.engine.rules
        applied = live.applied_at
        body = [rule_view(rule, applied.get(rule_id))
                for rule_id, rule in sorted(snapshot.items())]
        headers = {REVISION_HEADER: str(revision)} if revision is not None else None
        return json_response(body, headers=headers)

    async def one_rule(request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        rule = live.engine.rules.get(rule_id)
        if rule is None:
            return error(404, f"no rule {rule_id}")
        return json_response(rule_view(rule, live.applied_at.get(rule_id)))

    async def events(request: Request) -> Response:
        if not live.ready:
            return error(503, "rules not loaded yet")
        body = await read_body(request, max_body_bytes)
        if isinstance(body, Response):
            return body
        fmt = log_format(request)
        if fmt is not None:
            return tag_log_records(live.engine, body, fmt)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return error(400, f"malformed JSON: {exc}")
        parsed = parse_events(data)
        if isinstance(parsed, Response):
            return parsed
        engine = live.engine
        tags: list[dict[str, Any]] = []
        for index, event in enumerate(parsed):
            try:
                tags.extend(tag.as_dict() for tag in engine.evaluate(event))
            except Exception as exc:  # a rule bug must not take the worker down
                log.exception("evaluating event %d failed", index)
                return error(500, f"evaluation failed: {type(exc).__name__}", index=index)
        return json_response(tags)

    return Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/rules", rules, methods=["GET"]),
        Route("/rules/{rule_id}", one_rule, methods=["GET"]),
        Route("/events", events, methods=["POST"]),
    ])
