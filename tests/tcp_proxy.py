"""A TCP proxy a test controls: cut live connections, refuse new ones, cut on a byte pattern.

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = url.set(host=proxy.host, port=proxy.port)
        ...
        proxy.cut()        # abort every live connection (both sides see a reset)
        proxy.pause()      # new connections are accepted and dropped at once
        proxy.resume()
        proxy.cut_when(b"COMMIT")            # abort before forwarding that chunk
        proxy.cut_when(b"COMMIT", after=True)  # forward it, cut at the server's reply
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass


@dataclass
class _Trigger:
    pattern: bytes
    after: bool
    fired: asyncio.Event
    replies: int = 1


class TcpProxy:
    """Forwards `127.0.0.1:<port>` to `target_host:target_port`."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = 0
        self.paused = False
        self.accepted = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._trigger: _Trigger | None = None
        self._cut_on_reply: _Trigger | None = None

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in tuple(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # control ----------------------------------------------------------------

    @property
    def live(self) -> int:
        return len(self._links)

    def cut(self) -> int:
        """Abort every live connection; how many were cut."""
        links = tuple(self._links)
        self._links.clear()
        for client, server in links:
            _abort(client)
            _abort(server)
        self.cuts += len(links)
        return len(links)

    def pause(self) -> None:
        """Drop new connections as soon as they arrive (live ones are untouched)."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def outage(self) -> None:
        """The database went away: nothing connects and nothing live survives."""
        self.pause()
        self.cut()

    def cut_when(self, pattern: bytes, *, after: bool = False,
                 replies: int = 1) -> asyncio.Event:
        """Cut every connection when a client sends `pattern` (once); the event fires then.

        With `after=False` the chunk holding `pattern` is not forwarded; with
        `after=True` it is, and the cut happens when the server answers (the answer is
        dropped): the server has acted on it, the client never learns the outcome.
        `replies` counts server answers to wait for, the last one dropped (a driver
        that prepares a statement before executing it gets an answer for each).
        """
        trigger = _Trigger(pattern, after, asyncio.Event(), replies)
        self._trigger = trigger
        return trigger.fired

    # forwarding ---------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.paused:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host,
                                                                 self.target_port)
        except OSError:
            _abort(writer)
            return
        self.accepted += 1
        link = (writer, up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        for task in (loop.create_task(self._pump(reader, up_writer, link, client=True)),
                     loop.create_task(self._pump(up_reader, writer, link, client=False))):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
                    *, client: bool) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                trigger = self._trigger
                if client and trigger is not None and trigger.pattern in data:
                    self._trigger = None
                    if trigger.after:
                        self._cut_on_reply = trigger
                    else:
                        self.cut()
                        trigger.fired.set()
                        return
                pending = self._cut_on_reply
                if not client and pending is not None:
                    pending.replies -= 1
                    if pending.replies <= 0:
                        self._cut_on_reply = None
                        self.cut()
                        pending.fired.set()
                        return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if link in self._links:
                self._links.discard(link)
                for side in link:
                    with contextlib.suppress(Exception):
                        side.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
    else:
        with contextlib.suppress(Exception):
            transport.abort()
