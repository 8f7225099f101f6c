"""The fleet's reports: what each worker runs, kept in a JetStream KV bucket with a TTL.

A worker puts one JSON report under its id every report interval (`report_loop`);
the bucket's TTL drops the reports of workers gone for good. `read_fleet` joins the
reports with the database's head revision into a `FleetStatus` (what `decnet-ttp fleet
status` prints and `fleet_metrics` exports for Prometheus).

A report is one plain JSON object (`worker_report`); its `tags` member holds what the
worker tagged (`decnet.swarm.http.hits.TagHits.report_fields`), which
`decnet.swarm.fleet_hits` sums across the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import nats.js.errors
import orjson
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from decnet.swarm.kv_mirror import KvMirror, MirrorLimits, read_bucket
from decnet.swarm.live import LiveRules
from decnet.ttp.constants import (
    FLEET_MIRROR_MAX_BYTES,
    FLEET_MIRROR_MAX_REPORT,
    FLEET_MIRROR_MAX_WORKERS,
    FLEET_REPORT_TTL,
    FLEET_STALE_AFTER,
)
from decnet.ttp.loops import Outage, raise_if_cancelled
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.database.jetstream import NatsNames, connected_forever

log = logging.getLogger(__name__)

#: A worker's status in `fleet status`.
OK, BEHIND, SILENT, DIVERGED = "ok", "behind", "silent", "diverged"


def ruleset_sha256(rules: list[CompiledRule]) -> str:
    """A hash of what a worker evaluates: every rule's id, version, match, emits and state."""
    digest = hashlib.sha256()
    for rule in sorted(rules, key=lambda r: r.rule_id):
        state = rule.state
        digest.update(json.dumps(
            [rule.rule_id, rule.rule_version, rule.match_spec, rule.emits,
             state.state.value, state.confidence_max], default=str, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def worker_report(live: LiveRules, worker_id: str, http: str,
                  last_event_at: float | None = None) -> dict[str, Any]:
    """What a worker reports about itself (`last_event_at`: wall-clock time an event was
    last seen evaluated, None for none yet; `tags`: what it tagged in the last hour and
    day). Write it with `encode_report` (the tag samples are raw JSON)."""
    rules = list(live.engine.rules.values())
    feed = getattr(live.store, "tail", None)
    feed = getattr(feed, "feed", None)
    now = time.time()
    return {
        "worker_id": worker_id, "host": socket.gethostname(), "http": http,
        "revision": live.revision, "ruleset_sha256": ruleset_sha256(rules),
        "rules_loaded": len(rules), "last_event_at": last_event_at,
        "nats": None if feed is None else feed.healthy, "reported_at": now,
        "tags": live.hits.report_fields(now),
    }


def encode_report(report: dict[str, Any]) -> bytes:
    """A report as the JSON bytes put in the fleet bucket."""
    return orjson.dumps(report)


async def fleet_bucket(nc: Client, names: NatsNames, *, create: bool = True) -> KeyValue:
    """The fleet's KV bucket (created with its TTL when missing and `create`)."""
    js = nc.jetstream()
    try:
        return await js.key_value(names.fleet_bucket)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            raise
        return await js.create_key_value(KeyValueConfig(
            bucket=names.fleet_bucket, ttl=FLEET_REPORT_TTL, history=1))


async def report_loop(live: LiveRules, url: str, names: NatsNames, *, worker_id: str,
                      http: str, interval: float) -> None:
    """Put this worker's report every `interval` seconds until cancelled; NATS outages
    are retried (reports are best effort, the rules never wait on them)."""
    seen_events, last_event_at = live.engine.events_evaluated, None

    async def session(nc: Client, lost: asyncio.Event, ready: Callable[[], None]) -> None:
        nonlocal seen_events, last_event_at
        bucket = await fleet_bucket(nc, names)
        ready()
        while not lost.is_set():
            if live.engine.events_evaluated != seen_events:
                seen_events, last_event_at = live.engine.events_evaluated, time.time()
            report = worker_report(live, worker_id, http, last_event_at)
            await bucket.put(worker_id, encode_report(report))
            raise_if_cancelled()  # nats-py's requests wait with wait_for
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), interval)

    await connected_forever(url, session, Outage(log, "fleet reports to NATS"), "retrying")


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    worker_id: str
    host: str
    http: str
    revision: int | None
    ruleset_sha256: str
    lag: int | None
    age_s: float
    status: str


@dataclass(frozen=True, slots=True)
class FleetStatus:
    head_revision: int | None
    workers: list[WorkerStatus]

    def as_json(self) -> dict[str, Any]:
        return {"head_revision": self.head_revision,
                "workers": [asdict(worker) for worker in self.workers]}

    def count(self, status: str) -> int:
        return sum(1 for worker in self.workers if worker.status == status)


def _revision(report: dict[str, Any]) -> int | None:
    """A report's revision; None when it is not a whole number (a report is a worker's
    JSON: one malformed report must not break the fleet's page)."""
    value = report.get("revision")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reported_at(report: dict[str, Any]) -> float:
    value = report.get("reported_at")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0


def classify(reports: list[dict[str, Any]], head: int | None, *, stale_after: float,
             now: float) -> FleetStatus:
    """Each report's lag, age and status. A worker is `silent` past `stale_after`,
    `diverged` when its ruleset hash is not the one most peers at its revision have,
    `behind` when its revision is below the head, else `ok`."""
    usual: dict[int | None, str] = {}
    by_revision: dict[int | None, Counter[str]] = {}
    for report in reports:
        by_revision.setdefault(_revision(report), Counter())[
            str(report.get("ruleset_sha256"))] += 1
    for revision, hashes in by_revision.items():
        (top, top_count), *rest = hashes.most_common()
        if not rest or top_count > rest[0][1]:
            usual[revision] = top
    workers = []
    for report in sorted(reports, key=lambda r: str(r.get("worker_id"))):
        revision = _revision(report)
        age = max(0.0, now - _reported_at(report))
        lag = None if head is None or revision is None else max(0, head - revision)
        sha = str(report.get("ruleset_sha256"))
        if age > stale_after:
            status = SILENT
        elif (revision in usual and usual[revision] != sha) or \
                (revision not in usual and len(by_revision[revision]) > 1):
            status = DIVERGED
        elif lag is None or lag > 0:
            status = BEHIND
        else:
            status = OK
        workers.append(WorkerStatus(
            worker_id=str(report.get("worker_id")), host=str(report.get("host")),
            http=str(report.get("http")), revision=revision, ruleset_sha256=sha,
            lag=lag, age_s=round(age, 3), status=status))
    return FleetStatus(head, workers)


MIRROR_LIMITS = MirrorLimits(FLEET_MIRROR_MAX_WORKERS, FLEET_MIRROR_MAX_BYTES,
                             FLEET_MIRROR_MAX_REPORT)


def as_report(worker_id: str, value: Any) -> dict[str, Any]:
    """A report as its worker put it (a plain JSON object, passed on unchanged); one that
    is not a JSON object, or over the mirror's size limit, stands as its worker id alone
    (shown silent)."""
    return value if isinstance(value, dict) else {"worker_id": worker_id}


async def read_reports(url: str, names: NatsNames) -> list[dict[str, Any]]:
    """Every report in the fleet bucket (none when the bucket does not exist yet), read
    once through one watch."""
    try:
        items = await read_bucket(
            url, functools.partial(fleet_bucket, names=names, create=False), MIRROR_LIMITS,
            what="fleet reports")
    except nats.js.errors.BucketNotFoundError:
        return []
    return [as_report(key, value) for key, value in items]


async def read_fleet(db_url: str, url: str, names: NatsNames, *,
                     stale_after: float) -> FleetStatus:
    """The fleet now: the database's head revision and every worker's report, classified."""
    from decnet.ttp.store.sql.repository import RuleRepository  # SQLAlchemy: only here

    repo = RuleRepository(db_url)
    try:
        head = await repo.head_revision()
    finally:
        await repo.dispose()
    reports = await read_reports(url, names)
    return classify(reports, head, stale_after=stale_after, now=time.time())


class FleetSource:
    """Where the master reads the workers' reports (its `--nats`), and when one is stale.

    A live mirror of the fleet bucket (`KvMirror`, creating the bucket when missing),
    started by the first read and followed by one watch until `close()`: a page costs no
    NATS round trip, and staleness is computed at read time. Reads raise
    `MirrorUnavailable` while NATS cannot be reached.
    """

    def __init__(self, url: str, names: NatsNames,
                 stale_after: float = FLEET_STALE_AFTER) -> None:
        self.url = url
        self.names = names
        self.stale_after = stale_after
        self.mirror = KvMirror(url, functools.partial(fleet_bucket, names=names),
                               MIRROR_LIMITS, what="fleet reports")

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever `reports()` may: what is derived from the reports (totals over
        the fleet) can be kept until it does."""
        return self.mirror.version

    async def reports(self) -> list[dict[str, Any]]:
        """Every live worker's latest report, as it put it."""
        return [as_report(key, value) for key, value in await self.mirror.items()]

    async def status(self, head: int | None) -> FleetStatus:
        """Every report now, classified against the database's `head` revision."""
        return classify(await self.reports(), head, stale_after=self.stale_after,
                        now=time.time())

    async def close(self) -> None:
        await self.mirror.close()


def fleet_metrics(status: FleetStatus) -> str:
    """The fleet's gauges in the Prometheus text format (for the master's /metrics)."""
    lines = []
    for name, value, help_text in (
        ("decnet_ttp_fleet_workers", len(status.workers), "Workers that reported."),
        ("decnet_ttp_fleet_workers_behind", status.count(BEHIND),
         "Workers below the database's head revision."),
        ("decnet_ttp_fleet_workers_silent", status.count(SILENT),
         "Workers whose last report is older than --stale-after."),
        ("decnet_ttp_fleet_workers_diverged", status.count(DIVERGED),
         "Workers whose ruleset hash differs from their peers' at the same revision."),
        ("decnet_ttp_fleet_head_revision", status.head_revision or 0,
         "The database's head revision."),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
    return "\n".join(lines) + "\n"
