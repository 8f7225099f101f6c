"""Slow, idle and non-reading clients are dropped within the documented timeouts, and
the connection cap makes room by evicting the longest-idle: `/healthz` keeps answering.

Waits are deadlines on conditions; the only durations asserted are the protocol
timeouts themselves (0.5 s here), with a margin of several seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import orjson
import pytest

from decnet.swarm.http.limits import HttpLimits
from tests.swarm.http.serving import amplifying_event, copy_rules, metric, serving
from tests.waiting import poll

TIMEOUT = 0.5
#: Room for a loaded CI machine on top of a protocol timeout.
MARGIN = 10.0
LIMITS = HttpLimits(header_timeout=TIMEOUT, body_timeout=TIMEOUT, keep_alive_timeout=TIMEOUT,
                    write_timeout=TIMEOUT, max_response_bytes=8 << 20, max_body_bytes=2 << 20)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Read until the server closes (EOF or reset)."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


async def healthy(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/healthz", timeout=MARGIN)
        assert response.status_code == 200


async def scrape(url: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=url) as client:
        return metric((await client.get("/metrics")).text, name)


def test_slowloris_connections_are_closed_and_healthz_answers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, LIMITS) as url:
        asyncio.run(_slowloris(url, connections=50))


async def _slowloris(url: str, connections: int) -> None:
    port = int(url.rsplit(":", 1)[1])
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    stop = asyncio.Event()

    async def drip(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            writer.write(b"POST /events HTTP/1.1\r\nHost: w\r\nX-Slow: ")
            while not stop.is_set():
                writer.write(b"a")
                await writer.drain()
                await asyncio.sleep(0.05)

    drips = [asyncio.create_task(drip(w)) for _, w in streams]
    try:
        await healthy(url)  # answered while all of them drip
        closing = asyncio.gather(*(closed_by_server(r) for r, _ in streams))
        await asyncio.wait_for(closing, TIMEOUT + MARGIN)
        assert await scrape(url, 'decnet_ttp_http_connections_closed_total'
                                 '{reason="header_timeout"}') >= connections
        await healthy(url)
    finally:
        stop.set()
        await asyncio.gather(*drips)
        for _, writer in streams:
            writer.close()


def test_a_body_that_stops_arriving_is_dropped_and_frees_its_slot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, LIMITS) as url:
        asyncio.run(_stalled_body(url))


async def _stalled_body(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /events HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n[{")
    await writer.drain()
    await asyncio.wait_for(closed_by_server(reader), TIMEOUT + MARGIN)
    writer.close()
    assert await scrape(url, 'decnet_ttp_http_connections_closed_total'
                             '{reason="body_timeout"}') == 1

    async def slot_free() -> bool:
        return await scrape(url, "decnet_ttp_http_events_in_progress") == 0

    await poll(slot_free, timeout=MARGIN, message="the request's slot to be released")


def test_an_idle_keep_alive_connection_is_closed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, LIMITS) as url:
        asyncio.run(_idle_keep_alive(url))


async def _idle_keep_alive(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: w\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), MARGIN)
    assert head.startswith(b"HTTP/1.1 200")
    await asyncio.wait_for(closed_by_server(reader), TIMEOUT + MARGIN)
    writer.close()


def test_a_client_that_never_reads_its_response_is_dropped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with serving(copy_rules(tmp_path), capsys, LIMITS) as url:
        asyncio.run(_never_reads(url))


async def _never_reads(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    # 40 events x ~60 tags x 4 KiB of (capped) evidence: the 4 MiB response cap, more than
    # the kernel's socket buffers hold
    body = orjson.dumps([amplifying_event(5_000, f"amp{i}") for i in range(40)])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"POST /events HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    try:
        async def dropped() -> bool:
            return await scrape(url, 'decnet_ttp_http_connections_closed_total'
                                     '{reason="write_timeout"}') == 1

        await poll(dropped, timeout=TIMEOUT + MARGIN, message="the non-reader to be dropped")

        async def slot_free() -> bool:
            return await scrape(url, "decnet_ttp_http_events_in_progress") == 0

        await poll(slot_free, timeout=MARGIN, message="the request's slot to be released")
        await healthy(url)
    finally:
        sock.close()


def test_past_the_connection_cap_the_longest_idle_make_room(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    limits = HttpLimits(max_connections=20, header_timeout=60.0)
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, limits) as url:
        asyncio.run(_crowd(url, connections=60))


async def _crowd(url: str, connections: int) -> None:
    port = int(url.rsplit(":", 1)[1])
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    try:
        await healthy(url)
        evicted = await scrape(url, 'decnet_ttp_http_connections_closed_total'
                                    '{reason="evicted"}')
        assert evicted >= connections - 20
        assert await scrape(url, "decnet_ttp_http_connections") <= 20
    finally:
        for _, writer in streams:
            writer.close()


def test_a_flood_of_invalid_requests_is_one_log_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    with serving(copy_rules(tmp_path, ["R0001.yaml"]), capsys, LIMITS) as url:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                while sock.recv(65536):
                    pass
        with httpx.Client(base_url=url) as client:
            assert client.get("/healthz").status_code == 200
    invalid = [r for r in caplog.records if "Invalid HTTP request" in r.getMessage()]
    assert len(invalid) == 1
