"""The console's tag counts, read from workers' reports in a real NATS bucket: tags per
minute on the overview, hit columns, filter and sort on the rules page, the observed
layer of the coverage matrix, its drill-down with sample tags (escaped), and the
observed Navigator layer."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import httpx
import nats
import pytest

from decnet.swarm.console.mount import create_master_app
from decnet.swarm.fleet import FleetSource, encode_report, fleet_bucket
from decnet.swarm.http.hits import TagHits, TagTally
from decnet.ttp.engine.events import Tag
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.database.jetstream import NatsNames
from decnet.ttp.store.sql.tokens import TokenTable
from tests.services import require_service
from tests.swarm.console.test_app import HOSTILE, Console
from tests.ttp.store.helpers import open_store, seed

pytestmark = pytest.mark.nats
URL = os.environ.get("DECNET_TTP_NATS_URL") or "nats://127.0.0.1:4222"
EVIL = "<script>alert('evidence')</script>"


def tag(rule_id: str, technique: str, tactic: str, text: str) -> Tag:
    return Tag(uuid=str(uuid.uuid4()), source_kind="command", source_id="c1",
               rule_id=rule_id, rule_version=1, tactic=tactic, technique_id=technique,
               sub_technique_id=None, confidence=0.7, evidence={"command_text": text},
               decky_id="decky-03")


def tags_report(worker: str, tags: list[Tag], at: float) -> dict[str, Any]:
    """A worker's report whose counters saw `tags` at `at` (the worker's own code)."""
    hits = TagHits()
    tally = TagTally()
    for one in tags:  # one event each
        tally.add([one])
    hits.record(tally, at)
    return {"worker_id": worker, "host": "h", "http": "http://h", "revision": 1,
            "ruleset_sha256": "a", "reported_at": time.time(),
            "tags": hits.report_fields(time.time())}


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    parsed = urlparse(URL)
    require_service("NATS", parsed.hostname or "127.0.0.1", parsed.port or 4222)
    names = NatsNames(f"t{uuid.uuid4().hex[:12]}")
    nc = await nats.connect(URL)
    try:
        bucket = await fleet_bucket(nc, names)
        now = time.time()
        await bucket.put("w1", encode_report(tags_report("w1", [
            tag("R0001", "T1082", "TA0007", "uname -a")] * 3, now)))
        await bucket.put("w2", encode_report(tags_report("w2", [
            tag("R0001", "T1082", "TA0007", f"uname {EVIL}"),
            tag("R0666", "T1059", "TA0002", "evil")], now - 2 * 3600)))
        async with open_store() as store:
            await seed(store, "R0001")
            hostile = compile_rule(HOSTILE, source="R0666.yaml", expected_rule_id="R0666")
            await store.upsert_rule(hostile, source_path="R0666.yaml", updated_by="test")
            tokens = {"viewer": "dttp_viewer-secret"}
            await TokenTable(store.repo).create("viewer-console", "viewer", tokens["viewer"],
                                                None)
            app = create_master_app(store, FleetSource(URL, names))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport,
                                         base_url="http://master") as client:
                yield Console(store, client, tokens)
    finally:
        await nc.jetstream().delete_key_value(names.fleet_bucket)
        await nc.close()


def cells(html: str, rule_id: str) -> tuple[str, str]:
    row = re.search(rf'<tr data-rule="{rule_id}">(.*?)</tr>', html, re.S)
    assert row, html
    hour = re.search(r'hits-hour[^>]*>(\d+)<', row.group(1))
    day = re.search(r'hits-day[^>]*>(\d+)<', row.group(1))
    assert hour and day, row.group(1)
    return hour.group(1), day.group(1)


async def test_the_overview_shows_tags_per_minute(console: Console) -> None:
    await console.sign_in("viewer")
    page = (await console.client.get("/ui/")).text
    assert 'id="tags-last-hour">3' in page
    assert '<svg class="spark"' in page and "UTC: 3 tag(s)" in page


async def test_the_rules_table_shows_filters_and_sorts_by_hits(console: Console) -> None:
    await console.sign_in("viewer")
    page = (await console.client.get("/ui/rules")).text
    assert cells(page, "R0001") == ("3", "4") and cells(page, "R0666") == ("0", "1")
    hour = (await console.client.get("/ui/rules?hits=hour")).text
    assert 'data-rule="R0001"' in hour and 'data-rule="R0666"' not in hour
    none = (await console.client.get("/ui/rules?hits=none")).text
    assert "data-rule=" not in none
    by_day = (await console.client.get("/ui/rules?sort=day&q=R")).text
    assert by_day.index('data-rule="R0001"') < by_day.index('data-rule="R0666"')
    assert 'href="/ui/rules?q=R&amp;sort=hour"' in by_day
    rule = (await console.client.get("/ui/rules/R0001")).text
    assert "<strong>3</strong> in the last hour, <strong>4</strong> in the last day" in rule


async def test_coverage_shows_what_was_observed_over_the_period(console: Console) -> None:
    await console.sign_in("viewer")
    hour = (await console.client.get("/ui/coverage?shade=observed&period=hour")).text
    assert 'data-technique="T1082" data-observed="3"' in hour
    assert 'data-technique="T1059" data-observed="0"' in hour
    assert 'id="observed-count">1<' in hour
    day = (await console.client.get("/ui/coverage?shade=observed&period=day")).text
    assert 'data-technique="T1082" data-observed="4"' in day
    assert 'class="heat heat-1" data-technique="T1059" data-observed="1"' in day
    layer = (await console.client.get("/ui/coverage/layer.json?layer=observed&period=day"))
    scores = {t["techniqueID"]: t["score"] for t in layer.json()["techniques"]}
    assert scores == {"T1082": 4, "T1059": 1}


async def test_the_drill_down_lists_rules_and_escaped_samples(console: Console) -> None:
    await console.sign_in("viewer")
    hour = (await console.client.get("/ui/coverage/TA0007/T1082?period=hour")).text
    assert 'id="technique-observed">3<' in hour
    assert hour.count('class="sample"') == 1 and "uname -a" in hour  # w1's, w2's is older
    day = (await console.client.get("/ui/coverage/TA0007/T1082?period=day")).text
    assert day.count('class="sample"') == 2
    assert EVIL not in day
    assert "&lt;script&gt;alert(&#39;evidence&#39;)&lt;/script&gt;" in day
    assert '<tr data-rule="R0001">' in day and "decky decky-03" in day
