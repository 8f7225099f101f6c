"""A worker process under a low open-file limit, crowded with connections: the cap
stays below the limit, `/healthz` keeps answering and the log does not flood."""

from __future__ import annotations

import asyncio
import ctypes
import resource
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

from decnet.swarm.http.limits import connection_room
from decnet.ttp.store.sql import migrate
from tests.waiting import poll

FILE_LIMIT = 128
CONNECTIONS = 300


def _limited(files: int) -> Callable[[], None]:
    def child() -> None:  # between fork and exec
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    return child


def test_a_crowded_worker_under_a_low_file_limit_keeps_answering(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'rules.db'}"
    asyncio.run(migrate.upgrade(url))
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "decnet.cli.app", "worker", "--db", url,
             "--http", "127.0.0.1:0", "--header-timeout", "60"],
            stdout=subprocess.PIPE, stderr=log, preexec_fn=_limited(FILE_LIMIT))
    crowd: list[socket.socket] = []
    try:
        assert worker.stdout is not None
        port = None
        while port is None:
            line = worker.stdout.readline()
            assert line, log_path.read_text()
            event = orjson.loads(line)
            if event["event"] == "listening":
                port = event["port"]
        base = f"http://127.0.0.1:{port}"
        asyncio.run(poll(lambda: _healthy(base), timeout=30, message="worker ready"))
        crowd.extend(asyncio.run(_connect_all(port, CONNECTIONS)))
        asyncio.run(poll(lambda: _healthy(base), timeout=30,
                         message="/healthz through the crowd"))
        metrics = httpx.get(f"{base}/metrics").text
        values = {line.split(" ")[0]: float(line.split(" ")[1])
                  for line in metrics.splitlines() if line and not line.startswith("#")}
        assert values["decnet_ttp_http_max_connections"] == connection_room(FILE_LIMIT)
        assert values["decnet_ttp_http_connections"] <= connection_room(FILE_LIMIT)
        assert values['decnet_ttp_http_connections_closed_total{reason="evicted"}'] > 0
    finally:
        for sock in crowd:
            sock.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        finally:
            if worker.poll() is None:
                worker.kill()
            if worker.stdout is not None:
                worker.stdout.close()
    log_text = log_path.read_text()
    assert "Too many open files" not in log_text, log_text[-2000:]
    assert len(log_text.splitlines()) < 20, log_text[-2000:]
    assert f"open-file limit {FILE_LIMIT}" in log_text
    assert worker.returncode == 0


async def _connect_all(port: int, count: int) -> list[socket.socket]:
    """`count` connections opened at once (a full listen queue delays some by the
    kernel's SYN retries, in parallel rather than one after the other)."""
    loop = asyncio.get_running_loop()

    async def one() -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        return sock

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _healthy(base: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


def test_the_soft_file_limit_is_raised_towards_the_hard_one_as_far_as_needed() -> None:
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (200, 4096))\n"
        "from decnet.swarm.http.limits import HttpLimits, connection_room\n"
        "limits = HttpLimits(max_connections=1000).within_fd_limit()\n"
        "assert limits.max_connections == 1000, limits\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE) == (1000 + 200 - "
        "connection_room(200), 4096)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300))\n"
        "assert HttpLimits().within_fd_limit().max_connections == connection_room(300)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
