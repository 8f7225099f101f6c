"""A real worker HTTP server (`run_worker`) on its own thread and event loop.

The server's loop is not the test's: a test's client measures the server the way a
separate process would (they share only the GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from decnet.swarm.http.limits import HttpLimits
from decnet.swarm.worker import run_worker
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from tests.waiting import poll

SHIPPED = Path(__file__).resolve().parents[3] / "rules" / "ttp"
JSON = {"Content-Type": "application/json"}


def copy_rules(target: Path, names: Iterable[str] | None = None) -> Path:
    """The shipped rules (all, or the named files) copied into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(SHIPPED.glob("*.yaml")):
        if names is None or source.name in names:
            shutil.copy(source, target / source.name)
    return target


class ServerThread:
    """`run_worker` over a filesystem store, on a thread; `url` once it listens."""

    def __init__(self, rules: Path, limits: HttpLimits) -> None:
        self.rules = rules
        self.limits = limits
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.code: int | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="worker-under-test", daemon=True)

    def _run(self) -> None:
        async def serve() -> int:
            self.loop = asyncio.get_running_loop()
            self.stop = asyncio.Event()
            store = FilesystemRuleStore(self.rules)
            return await run_worker(store, host="127.0.0.1", port=0, tail=None,
                                    stop=self.stop, limits=self.limits)

        try:
            self.code = asyncio.run(serve())
        except BaseException as exc:  # reported by `close`
            self.failure = exc

    def close(self) -> None:
        if self.loop is not None and self.stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the worker thread did not stop"
        if self.failure is not None:
            raise self.failure
        assert self.code == 0


@contextlib.contextmanager
def serving(rules: Path, capsys: pytest.CaptureFixture[str],
            limits: HttpLimits | None = None) -> Iterator[str]:
    """A ready worker's base URL (`http://127.0.0.1:PORT`); stopped on exit."""
    server = ServerThread(rules, limits or HttpLimits())
    server.thread.start()
    try:
        port = asyncio.run(_port_and_ready(server, capsys))
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def _port_and_ready(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> int:
    def listening() -> int | None:
        if server.failure is not None:
            raise server.failure
        for line in capsys.readouterr().out.splitlines():
            if '"listening"' in line:
                return int(orjson.loads(line)["port"])
        return None

    port = await poll(listening, timeout=20, message="the worker to listen")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        async def ready() -> bool:
            return (await client.get("/healthz")).status_code == 200

        await poll(ready, timeout=20, message="the worker to load its rules")
    return port


def metric(text: str, name: str) -> float:
    """One sample of a Prometheus text exposition (`name` with its labels, if any)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} in /metrics")


EXAMPLES = SHIPPED.parents[1] / "examples" / "events.jsonl"


def many_rules_command() -> str:
    """Every command line of the shipped examples in one: fires most command rules."""
    texts = []
    for line in EXAMPLES.read_bytes().splitlines():
        event = orjson.loads(line)
        if event["source_kind"] == "command":
            texts.append(event["payload"]["command_text"])
    return " ; ".join(texts)


def amplifying_event(padding: int, source_id: str = "amp") -> dict[str, object]:
    """One event whose every tag copies `padding` bytes of evidence (the `user` field)."""
    return {"source_kind": "command", "source_id": source_id,
            "payload": {"command_text": many_rules_command(), "user": "u" * padding}}
