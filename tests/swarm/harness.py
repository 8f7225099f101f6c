"""Real swarm processes for tests and benchmarks: start, watch, stop, always clean up.

Every child gets `PR_SET_PDEATHSIG=SIGKILL`, so even a test runner killed hard
leaves no master or worker behind; `ProcessGroup.aclose()` (run by the fixtures
in a `finally`) SIGKILLs whatever is still running. Children announce themselves
with JSON lines on stdout (`listening`, `ready`, `stopped`); their logs go to a
file in the test's temp directory and are shown when a wait fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def cli_command(*args: str) -> list[str]:
    """`decnet-ttp ARGS` as run by this interpreter."""
    return [sys.executable, "-m", "decnet.cli.app", *args]


class Proc:
    """One child process with its stdout announcements and its log file."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env or {})
        self.log_path = log_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.starts = 0

    async def start(self) -> Proc:
        assert self.process is None or self.process.returncode is not None, "already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.events = []
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- start #{self.starts}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=log, env=env, preexec_fn=_die_with_parent)
        self._reader = asyncio.get_running_loop().create_task(self._read(self.process))
        return self

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                event = {"event": "text", "text": raw.decode(errors="replace")}
            if not isinstance(event, dict):
                event = {"event": "text", "text": repr(event)}
            self.events.append(event)
            self._changed.set()
        await process.wait()
        self._changed.set()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def event(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == name), None)

    async def wait_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """The first announcement `name` of the current run; fails on timeout or exit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.event(name)
            if found is not None:
                return found
            if self.process is not None and self.process.returncode is not None \
                    and (self._reader is None or self._reader.done()):
                raise AssertionError(f"{self.name} exited with {self.process.returncode} "
                                     f"before {name!r}:\n{self.log_tail()}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {name!r} within {timeout}s:\n"
                                     f"{self.log_tail()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    async def kill(self) -> None:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        await self._reap()

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL; the exit code."""
        if self.process is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s:\n"
                                 f"{self.log_tail()}") from None
        await self._reap()
        assert self.process.returncode is not None
        return self.process.returncode

    async def _reap(self) -> None:
        if self.process is not None:
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(f"  {self.name}| {line}" for line in text.splitlines()[-lines:])


class ProcessGroup:
    """Children that must all be gone when the test ends, whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def add(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, self.log_dir, env)
        self.procs.append(proc)
        return proc

    async def aclose(self) -> None:
        for proc in self.procs:
            proc.signal(signal.SIGKILL)
        for proc in self.procs:
            await proc._reap()

    def logs(self) -> str:
        return "\n".join(proc.log_tail() for proc in self.procs)


async def run_cli(*args: str, env: Mapping[str, str] | None = None,
                  timeout: float = 30.0, check: bool = True) -> tuple[int, str, str]:
    """Run `decnet-ttp ARGS` to completion; (code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *cli_command(*args), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})}, preexec_fn=_die_with_parent)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"decnet-ttp {' '.join(args)} ran over {timeout}s") from None
    code = process.returncode
    assert code is not None
    if check and code != 0:
        raise AssertionError(f"decnet-ttp {' '.join(args)} exited {code}:\n"
                             f"{out.decode(errors='replace')}\n{err.decode(errors='replace')}")
    return code, out.decode(errors="replace"), err.decode(errors="replace")


Predicate = Callable[[], bool]
