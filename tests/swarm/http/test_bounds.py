"""What one request may cost: events per request, response size, requests in progress."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from decnet.swarm.http.limits import HttpLimits
from tests.swarm.http.serving import JSON, amplifying_event, copy_rules, metric, serving
from tests.waiting import poll

UNAME = {"source_kind": "command", "source_id": "c1", "payload": {"command_text": "uname -a"}}


def test_one_response_is_no_larger_than_its_documented_bound(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limits = HttpLimits(max_response_bytes=256 * 1024)
    events = [amplifying_event(100_000, f"amp{i}") for i in range(5)] + [UNAME]
    with serving(copy_rules(tmp_path), capsys, limits) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/events", content=orjson.dumps(events), headers=JSON)
        assert response.status_code == 207
        assert len(response.content) <= limits.response_bound(len(events))
        body = response.json()
        assert body["errors"] == []
        kept = body["tags"]
        assert kept and all(t["source_id"] == "amp0" for t in kept)
        # every tag that did not fit is counted; the client may resend from from_index
        truncated = body["truncated"]
        assert truncated["from_index"] == 0
        assert truncated["tags_omitted"] > 0
        assert response.headers["X-Decnet-TTP-Tags-Omitted"] == str(truncated["tags_omitted"])
        text = client.get("/metrics").text
        assert metric(text, "decnet_ttp_http_responses_truncated_total") >= 1


def test_the_tag_count_cap_truncates_too(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    limits = HttpLimits(max_response_tags=3)
    events = [{**UNAME, "source_id": f"c{i}"} for i in range(5)]
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, limits) as url, \
            httpx.Client(base_url=url) as client:
        body = client.post("/events", content=orjson.dumps(events), headers=JSON).json()
        assert [t["source_id"] for t in body["tags"]] == ["c0", "c1", "c2"]
        assert body["truncated"] == {"tags_omitted": 2, "from_index": 3}


def test_too_many_events_are_refused_unevaluated(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    limits = HttpLimits(max_events=10)
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, limits) as url, \
            httpx.Client(base_url=url) as client:
        response = client.post("/events", content=orjson.dumps([UNAME] * 11), headers=JSON)
        assert response.status_code == 413 and "at most 10" in response.json()["error"]
        assert metric(client.get("/metrics").text, "decnet_ttp_events_evaluated_total") == 0
        response = client.post("/events", content=orjson.dumps([UNAME] * 10), headers=JSON)
        assert response.status_code == 200 and len(response.json()) == 10


def test_requests_past_max_pending_get_503_with_retry_after(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limits = HttpLimits(max_pending=1, body_timeout=60.0)
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, limits) as url:
        asyncio.run(_busy(url))


async def _busy(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    body = orjson.dumps(UNAME)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /events HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
    await writer.drain()
    async with httpx.AsyncClient(base_url=url) as client:
        async def holding() -> bool:
            text = (await client.get("/metrics")).text
            return metric(text, "decnet_ttp_http_events_in_progress") == 1

        await poll(holding, message="the first request to hold the only slot")
        refused = await client.post("/events", content=body, headers=JSON)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert (await client.get("/healthz")).status_code == 200
        writer.write(body[5:])
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 200")
        writer.close()
        text = (await client.get("/metrics")).text
        assert metric(text, 'decnet_ttp_http_refused_total{reason="busy"}') == 1
        assert (await client.post("/events", content=body, headers=JSON)).status_code == 200
