"""Fleet reports: statuses (ok, behind, silent, diverged), the Prometheus gauges, and the
report a worker puts in the bucket (real NATS)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

import nats
import pytest

from decnet.swarm.fleet import (
    BEHIND,
    DIVERGED,
    OK,
    SILENT,
    classify,
    fleet_bucket,
    fleet_metrics,
    read_reports,
    report_loop,
    ruleset_sha256,
)
from decnet.swarm.live import LiveRules
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import RuleState, StateName
from decnet.ttp.store.database import jetstream as jetstream_module
from decnet.ttp.store.database.jetstream import NatsNames
from decnet.ttp.store.sql import migrate
from tests.cancels import connect_with_a_cancel, stops
from tests.services import require_service
from tests.ttp.store.helpers import open_store, rule_yaml

NOW = 1_000_000.0


def report(worker_id: str, revision: int | None, sha: str = "a", age: float = 1.0) -> dict[
        str, object]:
    return {"worker_id": worker_id, "host": "h", "http": f"http://h/{worker_id}",
            "revision": revision, "ruleset_sha256": sha, "reported_at": NOW - age}


def statuses(reports: list[dict[str, object]], head: int | None = 10) -> dict[str, str]:
    fleet = classify(reports, head, stale_after=15.0, now=NOW)
    return {w.worker_id: w.status for w in fleet.workers}


def test_statuses_of_a_fleet() -> None:
    assert statuses([report("w1", 10), report("w2", 9), report("w3", 10, age=16.0)]) == {
        "w1": OK, "w2": BEHIND, "w3": SILENT}


def test_a_hash_unlike_its_peers_at_the_same_revision_is_diverged() -> None:
    assert statuses([report("w1", 10), report("w2", 10), report("w3", 10, sha="b"),
                     report("w4", 9, sha="c")]) == {
        "w1": OK, "w2": OK, "w3": DIVERGED, "w4": BEHIND}
    # two workers that disagree, with no majority: both are flagged
    assert statuses([report("w1", 10), report("w2", 10, sha="b")]) == {
        "w1": DIVERGED, "w2": DIVERGED}


def test_lag_and_the_json_shape() -> None:
    fleet = classify([report("w1", 7)], 10, stale_after=15.0, now=NOW)
    assert fleet.as_json() == {"head_revision": 10, "workers": [{
        "worker_id": "w1", "host": "h", "http": "http://h/w1", "revision": 7,
        "ruleset_sha256": "a", "lag": 3, "age_s": 1.0, "status": BEHIND}]}


def test_a_malformed_report_reads_as_silent_without_breaking_the_others() -> None:
    odd: list[dict[str, object]] = [
        {"worker_id": "w2", "revision": [10], "reported_at": "yesterday"},
        {"worker_id": "w3", "revision": "10", "reported_at": None, "ruleset_sha256": {}},
        {"worker_id": "w4", "revision": True, "reported_at": NOW}]
    assert statuses([report("w1", 10), *odd]) == {
        "w1": OK, "w2": SILENT, "w3": SILENT, "w4": BEHIND}


def test_fleet_metrics_count_each_status() -> None:
    fleet = classify([report("w1", 10), report("w2", 9), report("w3", 10, age=99)], 10,
                     stale_after=15.0, now=NOW)
    text = fleet_metrics(fleet)
    assert "decnet_ttp_fleet_workers 3\n" in text
    assert "decnet_ttp_fleet_workers_behind 1\n" in text
    assert "decnet_ttp_fleet_workers_silent 1\n" in text
    assert "decnet_ttp_fleet_workers_diverged 0\n" in text


def test_ruleset_hash_follows_definitions_and_states() -> None:
    rule = compile_rule(rule_yaml("R0001"), source="R0001.yaml", expected_rule_id="R0001")
    other = compile_rule(rule_yaml("R0001", 2), source="R0001.yaml", expected_rule_id="R0001")
    disabled = rule.with_state(RuleState(StateName.DISABLED))
    hashes = {ruleset_sha256([rule]), ruleset_sha256([other]), ruleset_sha256([disabled]),
              ruleset_sha256([])}
    assert len(hashes) == 4
    assert ruleset_sha256([rule]) == ruleset_sha256([rule])


@pytest.mark.nats
async def test_reports_round_trip_through_the_bucket() -> None:
    url = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
    parsed = urlparse(url)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    names = NatsNames(f"t{uuid.uuid4().hex[:12]}")
    assert await read_reports(url, names) == []  # no bucket yet
    nc = await nats.connect(url)
    try:
        bucket = await fleet_bucket(nc, names)
        await bucket.put("w1", b'{"worker_id": "w1", "revision": 3}')
        assert await read_reports(url, names) == [{"worker_id": "w1", "revision": 3}]
    finally:
        await nc.jetstream().delete_key_value(names.fleet_bucket)
        await nc.close()


@pytest.mark.nats
async def test_one_cancel_stops_the_report_loop_when_nats_answers_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nats-py waits with `wait_for`: a connection that lands with the cancel (returned on
    Python 3.11) must not leave the worker reporting."""
    url = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
    parsed = urlparse(url)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    names = NatsNames(f"t{uuid.uuid4().hex[:12]}")
    connect_with_a_cancel(monkeypatch, jetstream_module)  # where reports connect
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
    await migrate.upgrade(db_url)
    try:
        async with open_store(db_url) as store:
            task = asyncio.create_task(report_loop(LiveRules(store), url, names, worker_id="w1",
                                                   http="http://w1", interval=3600.0))
            assert await stops(task)
    finally:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_key_value(names.fleet_bucket)
        finally:
            await nc.close()
