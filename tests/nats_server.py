"""A NATS server of a test's own (`nats-server -js` on a free port), which the test may
stop and start again; the shared server is never touched."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.waiting import poll

BINARY_CANDIDATES = ("nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server")


def nats_server_binary() -> str | None:
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class NatsServer:
    """One `nats-server -js` process with its store in `directory`."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
            "-sd", str(self.directory), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        await poll(lambda: _accepts(self.port), timeout=10, interval=0.05,
                   message="nats-server to accept connections")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def own_nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A running server of this test's own; skipped when the binary is not installed."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed")
    server = NatsServer(binary, tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
