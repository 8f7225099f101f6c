"""The worker's HTTP API: an ASGI app over a `LiveRules` view.

- `GET /healthz`: 503 until the rules are loaded, then 200; 503 again while the
  rule database's SQLite file is gone or was replaced under this process
  (`status: database_problem`, `detail` says which and what to do). A worker with
  `--nats` adds `feed`: `nats`, or `database` (with `detail`) while NATS is away.
- `GET /metrics`: Prometheus text, from a registry of this app's own.
- `GET /rules`: the live view, a JSON array sorted by rule_id (header
  `X-Decnet-TTP-Revision` carries the store revision it includes, when known);
  `GET /rules/{rule_id}`: one entry, 404 when the rule is not live.
  Each entry has `applied_at`: the wall-clock time (Unix seconds) this worker
  applied the rule's latest change, taken when it was applied.
- `GET /status`: one JSON object (ready, revision, counters).
- `POST /events`: one JSON event or an array of them -> a JSON array of tags, or
  207 with per-event errors and truncation (see `decnet.swarm.http.batch`).
  415 unless the body is `application/json` (or `application/*+json`), 413 past the
  body or event-count limit, 400 on malformed JSON, 422 on a single malformed event,
  503 before the rules are loaded and (with Retry-After) when the worker is busy.
  Evaluation runs off the event loop (`decnet.swarm.http.evaluator`).
  `POST /events?format=auto|native|cowrie|opencanary` (or a body of type
  `application/x-ndjson`, read as `auto`): honeypot log records, one JSON value, an
  array or JSON lines -> `{"tags": [...], "errors": [{"index", "error"}],
  "skipped": {kind: count}, "truncated": ...}`, within the same limits; a bad record is
  an entry of `errors`, never the batch's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
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
from starlette.types import Receive, Scope, Send

from decnet.swarm.http.evaluator import Evaluator
from decnet.swarm.http.limits import HttpLimits
from decnet.swarm.http.media import UnsupportedMediaType, body_format
from decnet.swarm.http.protocol import ConnectionGuard
from decnet.swarm.live import LiveRules
from decnet.ttp.constants import MAX_EVENT_BODY_BYTES, RESPONSE_CHUNK_BYTES, RETRY_AFTER_SECONDS
from decnet.ttp.inputs import AUTO, FORMATS
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.codec import scoped_to_dict
from decnet.vocabulary import iso

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
        "expires_at": iso(effective.expires_at),
        "reason": effective.reason,
        "set_by": effective.set_by,
        "set_at": iso(effective.set_at),
        "held_state": held.state.value,
        "scopes": [scoped_to_dict(item) for item in rule.scoped
                   if not item.state.is_expired()],
        "yaml_sha256": rule.yaml_sha256,
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
        fallback = engine.fallback_stats
        yield _counter("decnet_ttp_fallback_searches",
                       "Searches of patterns RE2 cannot run (bounded PCRE2)", fallback.searches)
        yield _counter("decnet_ttp_fallback_limit_hits",
                       "Fallback searches stopped by their step or memory limit (no match)",
                       fallback.limit_hits)
        yield _counter("decnet_ttp_fallback_oversized",
                       "Texts too long for the fallback, not searched (no match)",
                       fallback.oversized)
        correlation = engine.correlation_stats
        yield _gauge("decnet_ttp_correlation_groups", "Live groups of cross-event rules",
                     correlation.live_groups)
        yield _counter("decnet_ttp_correlation_groups_evicted",
                       "Groups of cross-event rules evicted by the group cap",
                       correlation.groups_evicted)
        yield _counter("decnet_ttp_correlation_late_events",
                       "Events too late for their cross-event window (not counted)",
                       correlation.late_events)
        yield _counter("decnet_ttp_correlation_windows_fired",
                       "Cross-event windows that reached their threshold",
                       correlation.windows_fired)
        yield _counter("decnet_ttp_poll_errors",
                       "Failed reads of the database by the tail (and failed loads)",
                       live.sync.poll_errors + live.load_errors)
        yield _counter("decnet_ttp_polls", "Polls of the database by the tail",
                       live.sync.polls)
        yield _counter("decnet_ttp_notifications",
                       "PostgreSQL notifications that woke the tail",
                       live.sync.notifications)
        yield _counter("decnet_ttp_database_replacements",
                       "Times the tail found another database than the one it followed "
                       "(a replaced SQLite file, a recreated database) and reloaded from it",
                       live.sync.database_replacements)
        yield _gauge("decnet_ttp_database_problem",
                     "1 while the rule database's SQLite file is gone or was replaced",
                     float(live.sync.database_problem is not None))
        yield _counter("decnet_ttp_pushed_changes",
                       "Changes applied from NATS without reading the database",
                       live.sync.pushed)
        yield _counter("decnet_ttp_push_gaps",
                       "NATS messages that did not continue the revision (read from the "
                       "database instead)", live.sync.push_gaps)
        feed = live.feed
        if feed is not None:
            yield _gauge("decnet_ttp_nats_connected",
                         "1 while the NATS change feed is followed, 0 while the worker "
                         "follows the database instead", float(feed.healthy))
            yield _counter("decnet_ttp_nats_outages", "Times the NATS change feed was lost",
                           feed.stats.outages)
            yield _gauge("decnet_ttp_nats_head_beacon_fresh",
                         "1 while the lease holder's head beacon vouches for this worker "
                         "(no safety poll of the database), 0 while it is stale",
                         float(feed.vouched()))
            yield _counter("decnet_ttp_nats_stream_resumes",
                           "NATS (re)connections that caught up from the stream alone",
                           feed.stats.stream_resumes)
            yield _counter("decnet_ttp_nats_beacon_reads",
                           "Database reads for a head the beacon announced and the stream "
                           "did not deliver in time", feed.stats.beacon_reads)
        statements = live.store.statements_issued
        if statements is not None:
            yield _counter("decnet_ttp_db_statements",
                           "SQL statements this process issued to the rule database",
                           statements)
        age = live.last_sync_age()
        if age is not None:
            yield _gauge("decnet_ttp_last_sync_age_seconds",
                         "Seconds since the last successful read of the database", age)
        if live.revision is not None:
            yield _gauge("decnet_ttp_revision", "Database revision the engine includes",
                         live.revision)


class HttpCollector(Collector):
    """Counts of the HTTP door: requests refused, per-event errors, truncations, closings."""

    def __init__(self, evaluator: Evaluator, guard: ConnectionGuard | None) -> None:
        self.evaluator = evaluator
        self.guard = guard

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.evaluator.stats
        yield _gauge("decnet_ttp_http_events_in_progress",
                     "POST /events requests being read, evaluated or answered",
                     self.evaluator.gate.in_progress)
        yield _gauge("decnet_ttp_http_evaluating",
                     "1 while the evaluation thread is evaluating a request's events",
                     self.evaluator.evaluating)
        yield _counter("decnet_ttp_http_event_requests", "POST /events requests evaluated",
                       stats.requests)
        refused = CounterMetricFamily("decnet_ttp_http_refused",
                                      "POST /events requests refused unread", labels=["reason"])
        refused.add_metric(["busy"], stats.refused_busy)
        refused.add_metric(["media_type"], stats.refused_media_type)
        yield refused
        yield _counter("decnet_ttp_http_event_errors",
                       "Events answered with a per-event error entry", stats.event_errors)
        yield _counter("decnet_ttp_http_evaluation_failures",
                       "Events whose evaluation raised", stats.evaluation_failures)
        yield _counter("decnet_ttp_http_responses_truncated",
                       "Responses that omitted tags past the response caps",
                       stats.responses_truncated)
        yield _counter("decnet_ttp_http_tags_omitted", "Tags omitted by the response caps",
                       stats.tags_omitted)
        if self.guard is not None:
            yield _gauge("decnet_ttp_http_connections", "Open HTTP connections",
                         self.guard.open)
            yield _gauge("decnet_ttp_http_max_connections", "Cap on open HTTP connections",
                         self.guard.limits.max_connections)
            closed = CounterMetricFamily("decnet_ttp_http_connections_closed",
                                         "Connections the worker closed, by reason",
                                         labels=["reason"])
            for reason in ("header_timeout", "body_timeout", "write_timeout", "evicted",
                           "refused"):
                closed.add_metric([reason], self.guard.closed[reason])
            yield closed


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def metrics_registry(live: LiveRules, *extra: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveCollector(live))
    for collector in extra:
        registry.register(collector)
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


class StreamedBody(Response):
    """A response body handed to the server in chunks, each sent once the client has
    read the last (uvicorn waits on the transport's flow control between them); runs
    `on_done` when the last chunk is sent or the client is gone."""

    def __init__(self, body: bytes, status_code: int, headers: Mapping[str, str],
                 on_done: Callable[[], None]) -> None:
        super().__init__(body, status_code=status_code, headers=headers,
                         media_type="application/json")
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            body = self.body
            for start in range(0, len(body), RESPONSE_CHUNK_BYTES):
                await send({"type": "http.response.body",
                            "body": body[start:start + RESPONSE_CHUNK_BYTES],
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.on_done()


def create_app(live: LiveRules, *, limits: HttpLimits | None = None,
               max_body_bytes: int | None = None,
               guard: ConnectionGuard | None = None) -> Starlette:
    """The worker's ASGI app; `app.state.evaluator` must be closed when it is done.

    `guard` (the server's connection guard, when it has one) adds its counts to
    `/metrics`; `max_body_bytes` overrides that one limit.
    """
    limits = limits or HttpLimits()
    if max_body_bytes is not None:
        limits = dataclasses.replace(limits, max_body_bytes=max_body_bytes)
    evaluator = Evaluator(lambda: live.engine, limits, live.hits)
    registry = metrics_registry(live, HttpCollector(evaluator, guard))

    async def healthz(request: Request) -> Response:
        if not live.ready:
            return json_response({"status": "loading"}, 503)
        body: dict[str, Any] = {"status": "ok", "rules": len(live.engine.rules)}
        replacements = live.sync.database_replacements
        if replacements:
            body["database_replacements"] = replacements
        feed = live.feed
        if feed is not None:
            body["feed"] = "nats" if feed.healthy else "database"
            if not feed.healthy:
                body["detail"] = f"{feed.problem}; following the database meanwhile"
            elif not feed.vouched():
                body["detail"] = ("no head beacon from the master holding the lease; "
                                  "polling the database as a safety net")
        missing = live.sync.database_problem
        if missing is not None:
            # The last good rules are still served, but no change can reach them.
            body.update(status="database_problem", detail=str(missing))
            return json_response(body, 503)
        return json_response(body)

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
        fmt = request.query_params.get("format")
        try:
            media = body_format(request.headers.get("content-type"))
        except UnsupportedMediaType as exc:
            evaluator.stats.refused_media_type += 1
            return error(415, str(exc))
        gate = evaluator.gate
        if not gate.try_enter():
            evaluator.stats.refused_busy += 1
            return json_response({"error": "busy: too many requests in progress"}, 503,
                                 headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        handed_over = False
        try:
            body = await read_body(request, limits.max_body_bytes)
            if isinstance(body, Response):
                return body
            if fmt is None and media == "ndjson":
                fmt = AUTO
            if fmt is not None and fmt not in FORMATS:
                return error(400, f"unknown format {fmt[:40]!r} (one of {', '.join(FORMATS)})")
            outcome = await evaluator.evaluate(body, fmt)
            handed_over = True
            return StreamedBody(outcome.body, outcome.status, outcome.headers, gate.leave)
        finally:
            if not handed_over:
                gate.leave()

    app = Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/rules", rules, methods=["GET"]),
        Route("/rules/{rule_id}", one_rule, methods=["GET"]),
        Route("/events", events, methods=["POST"]),
    ])
    app.state.evaluator = evaluator
    return app
