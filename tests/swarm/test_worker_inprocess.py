"""`run_worker` in this process over a filesystem store: real socket, clean stop."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import orjson
import pytest

from decnet.swarm.process import parse_host_port
from decnet.swarm.worker import run_worker
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from tests.waiting import poll

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "ttp"


async def test_run_worker_serves_and_stops(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(SHIPPED / "R0001.yaml", tmp_path / "R0001.yaml")
    store = FilesystemRuleStore(tmp_path)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        run_worker(store, host="127.0.0.1", port=0, tail=None, stop=stop))

    def listening() -> str | None:
        for line in capsys.readouterr().out.splitlines():
            if '"listening"' in line:
                return line
        return None

    line = await poll(listening, message="the worker to listen")
    port = orjson.loads(line)["port"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        async def healthy() -> bool:
            return (await client.get("/healthz")).status_code == 200

        await poll(healthy, message="healthz 200")
        rules = (await client.get("/rules")).json()
        assert [r["rule_id"] for r in rules] == ["R0001"]
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    (":0", ("127.0.0.1", 0)),
    ("[::1]:9000", ("::1", 9000)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
])
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", "host:x", "host:70000"])
def test_parse_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text)
