"""Time-bounded Python `re` for what RE2 cannot decide.

A pattern RE2 cannot express (lookaround, backreference...) — or, rarely, a text
RE2 cannot read exactly (lone surrogates; a newline before the end for a pattern
with `$` in the middle) — is searched by Python's `re` in a child process. The
caller waits at most until its deadline; a search still running then is killed
(SIGKILL), a warm standby child takes over at once, the search counts as *no
match*, and its pattern is quarantined (no match, without running) for
`quarantine_seconds`, so a flood of hostile events pays the budget once per
pattern per quarantine window, not once per event.

The child runs `python -I -S` with nothing but `re` and `marshal`: it can neither
stall nor corrupt the worker, and it learns each pattern once.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import marshal
import os
import select
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:
    from decnet.ttp.rules.regex import CompiledPattern

log = logging.getLogger(__name__)

#: Wall time one event's fallback searches may take together.
DEFAULT_BUDGET_SECONDS: Final = 0.05
#: A pattern that ran out of time is not run again for this long.
DEFAULT_QUARANTINE_SECONDS: Final = 60.0
#: Texts longer than this are not sent to the sandbox (counted as skipped, no match).
DEFAULT_MAX_INPUT_CHARS: Final = 1 << 20

#: How long a new child may take to start.
STARTUP_TIMEOUT_SECONDS: Final = 5.0

_HEADER: Final = struct.Struct("<I")

_CHILD: Final = r"""
import marshal, re, struct, sys
read = sys.stdin.buffer.read
write = sys.stdout.buffer.write
flush = sys.stdout.buffer.flush
header = struct.Struct("<I")
patterns = {}
write(b"R")
flush()
while True:
    head = read(4)
    if len(head) < 4:
        break
    key, source, flags, text = marshal.loads(read(header.unpack(head)[0]))
    try:
        compiled = patterns.get(key)
        if compiled is None:
            compiled = patterns[key] = re.compile(source, flags)
        answer = b"1" if compiled.search(text) is not None else b"0"
    except Exception:
        answer = b"E"
    write(answer)
    flush()
"""


@dataclass(slots=True)
class SandboxStats:
    calls: int = 0
    timeouts: int = 0
    skipped: int = 0
    restarts: int = 0


class _Child:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _CHILD],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            bufsize=0, close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.stdout: IO[bytes] = self.process.stdout
        self.known: set[int] = set()
        self.ready = False

    def wait_ready(self, timeout: float) -> None:
        """Block until the child has started (it writes one byte), or raise OSError."""
        if self.ready:
            return
        fd = self.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(int(timeout * 1000)) or os.read(fd, 1) != b"R":
            raise OSError("sandbox child did not start")
        self.ready = True

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # pragma: no cover
            log.warning("sandbox child %d did not exit after SIGKILL", self.process.pid)


class Sandbox:
    """Runs Python `re` searches in a child process, each bounded by a deadline."""

    def __init__(self, *, budget_seconds: float = DEFAULT_BUDGET_SECONDS,
                 quarantine_seconds: float = DEFAULT_QUARANTINE_SECONDS,
                 max_input_chars: int = DEFAULT_MAX_INPUT_CHARS) -> None:
        self.budget_seconds = budget_seconds
        self.quarantine_seconds = quarantine_seconds
        self.max_input_chars = max_input_chars
        self.stats = SandboxStats()
        self._lock = threading.Lock()
        self._active: _Child | None = None
        self._standby: _Child | None = None
        self._quarantined: dict[int, float] = {}

    def deadline(self) -> float:
        """A deadline one budget from now."""
        return time.monotonic() + self.budget_seconds

    def search(self, pattern: CompiledPattern, text: str,
               deadline: float | None = None) -> bool | None:
        """True/False, or None when the search did not run or finish in time."""
        if deadline is None:
            deadline = self.deadline()
        key = pattern.key
        with self._lock:
            self.stats.calls += 1
            until = self._quarantined.get(key)
            now = time.monotonic()
            if until is not None:
                if now < until:
                    self.stats.skipped += 1
                    return None
                del self._quarantined[key]
            if len(text) > self.max_input_chars or now >= deadline:
                self.stats.skipped += 1
                return None
            try:
                child = self._child()
            except OSError:
                log.error("regex sandbox cannot start a child process")
                self._replace()
                self.stats.skipped += 1
                return None
            request = (key, None if key in child.known else pattern.source,
                       pattern.python.flags, text)
            try:
                payload = marshal.dumps(request)
                child.stdin.write(_HEADER.pack(len(payload)) + payload)
                child.known.add(key)
                answer = self._read(child, deadline)
            except (OSError, ValueError):
                self._replace()
                self.stats.skipped += 1
                return None
            if answer is None:
                self.stats.timeouts += 1
                self._quarantined[key] = time.monotonic() + self.quarantine_seconds
                log.warning("pattern %r ran out of time in the regex sandbox; no match, "
                            "quarantined for %.0fs", pattern.source, self.quarantine_seconds)
                self._replace()
                return None
            if answer == b"E":
                return False
            return answer == b"1"

    def _read(self, child: _Child, deadline: float) -> bytes | None:
        fd = child.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if poller.poll(max(1, int(remaining * 1000) + 1)):
                data = os.read(fd, 1)
                if not data:
                    raise OSError("sandbox child exited")
                return data

    def _child(self) -> _Child:
        if self._active is None:
            self._active = self._standby or _Child()
            self._standby = _Child()
        # Start-up is not charged to the event: the standby is normally warm already.
        self._active.wait_ready(STARTUP_TIMEOUT_SECONDS)
        return self._active

    def _replace(self) -> None:
        """Kill the active child; the standby takes over and a new standby starts."""
        self.stats.restarts += 1
        if self._active is not None:
            self._active.kill()
        self._active = self._standby
        self._standby = _Child()

    def close(self) -> None:
        with self._lock:
            for child in (self._active, self._standby):
                if child is not None:
                    child.kill()
            self._active = self._standby = None


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox (children start on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Sandbox()
                atexit.register(_default.close)
    return _default
