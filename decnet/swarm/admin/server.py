"""`AdminServer`: the admin API served by uvicorn inside the master process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from decnet.swarm.admin.app import create_admin_app
from decnet.swarm.process import announce
from decnet.swarm.worker import bind
from decnet.ttp.errors import ConfigError
from decnet.ttp.loops import cancel_and_wait
from decnet.ttp.store.base import RuleStore
from decnet.ttp.store.database import DatabaseRuleStore

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the master owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AdminServer:
    """Listens on `host:port` at construction (a bad address fails the start at once)
    and serves the admin API over `store` from `start()` to `stop()`; `app` builds what
    is served (the admin API alone by default)."""

    def __init__(self, store: RuleStore, host: str, port: int, *,
                 app: Callable[[DatabaseRuleStore], ASGIApp] = create_admin_app) -> None:
        if not isinstance(store, DatabaseRuleStore):
            raise ConfigError("the admin API needs the database store")
        self.sock = bind(host, port)
        self.app = app(store)
        self.server = _Server(uvicorn.Config(
            self.app, lifespan="off", log_config=None, log_level="warning",
            access_log=False, timeout_keep_alive=5, timeout_graceful_shutdown=5,
            limit_concurrency=256))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self.server.serve(sockets=[self.sock]), name="admin-http")
        host, port = self.sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        announce("admin", url=f"http://{shown}:{port}/api/v1", host=host, port=port)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 5)
        await cancel_and_wait(self._task, logger=log)
        self.sock.close()
