"""The swarm master: a `FilesystemRuleStore` over the rules directory, projected
into the database by `DatabaseRuleStore.sync_from_filesystem`.

At start the whole directory is reconciled with `ttp_rule` (rules added, changed
and deleted while the master was down); then every change of the directory is
written as it happens. SIGTERM/SIGINT stop it cleanly: the watcher is closed, an
in-flight write finishes or rolls back, the connections are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from decnet.swarm.process import (
    announce,
    first_done,
    install_stop_signals,
    remove_stop_signals,
    start_store,
)
from decnet.ttp.constants import NATS_DEFAULT_PREFIX
from decnet.ttp.errors import RuleSetError
from decnet.ttp.loops import cancel_and_wait
from decnet.ttp.store.base import RuleStore
from decnet.ttp.store.factory import database_store, filesystem_store
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

if TYPE_CHECKING:
    from decnet.swarm.admin.server import AdminServer
    from decnet.swarm.fleet import FleetSource
    from decnet.ttp.store.database.jetstream import NatsNames

log = logging.getLogger(__name__)

#: Runs the projection of the filesystem store into the database until cancelled;
#: calls its third argument after each whole-directory reconcile (the first: ready).
Sync = Callable[[RuleStore, FilesystemRuleStore, Callable[[], None]], Coroutine[Any, Any, Any]]


def default_updated_by() -> str:
    return f"master@{socket.gethostname()}"


async def run_master(
    fs_store: FilesystemRuleStore,
    db_store: RuleStore,
    sync: Sync,
    *,
    stop: asyncio.Event | None = None,
    admin_http: tuple[str, int] | None = None,
    fleet: FleetSource | None = None,
) -> int:
    """Project `fs_store` into `db_store` until `stop` (or SIGTERM/SIGINT); the exit code.

    With `admin_http` = (host, port), the admin API, the console and `/metrics` are served
    there too (see `decnet.swarm.admin`, `decnet.swarm.console`); `fleet`: where the
    workers report, for the console's overview and `/metrics`."""
    own_signals = stop is None
    stop = stop or asyncio.Event()
    if own_signals:
        install_stop_signals(stop)
    loop = asyncio.get_running_loop()
    stop_task = loop.create_task(stop.wait(), name="stop")
    sync_task: asyncio.Task[Any] | None = None
    admin: AdminServer | None = None
    code = 1
    try:
        if admin_http is not None:
            from decnet.swarm.admin.server import AdminServer  # Starlette: with --http only
            from decnet.swarm.console.mount import create_master_app

            admin = AdminServer(db_store, *admin_http,
                                app=functools.partial(create_master_app, fleet=fleet,
                                                      freeze_gc=True))
        if not await start_store(db_store, stop):
            code = 0
            return code
        if admin is not None:
            await admin.start()
        try:
            await fs_store.start()
        except RuleSetError as problem:
            log.error("cannot watch the rules directory: %s", problem)
            code = 2
            return code

        def synced() -> None:
            announce("ready", problems=len(fs_store.problems))
            log.info("rules directory %s is in the database", fs_store.directory)

        sync_task = loop.create_task(sync(db_store, fs_store, synced), name="sync")
        if await first_done(stop_task, sync_task) is stop_task:
            code = 0
        else:
            failure = None if sync_task.cancelled() else sync_task.exception()
            log.error("the sync ended unexpectedly: %r", failure)
        return code
    finally:
        if admin is not None:
            await admin.stop()
        await cancel_and_wait(sync_task, stop_task, logger=log)
        with contextlib.suppress(Exception):
            await fs_store.stop()
        with contextlib.suppress(Exception):
            await db_store.stop()
        if fleet is not None:
            await fleet.close()
        if own_signals:
            remove_stop_signals()
        announce("stopped", code=code)


def database_sync(updated_by: str, *, nats_url: str | None = None,
                  nats_prefix: str = NATS_DEFAULT_PREFIX,
                  publish_poll: float | None = None) -> Sync:
    """`DatabaseRuleStore.sync_from_filesystem`, announcing lease changes and reconciles.

    With `nats_url`, the lease holder also publishes every committed revision to the
    JetStream change stream (`ChangePublisher`), announces it on the bus's rule topics
    (`RuleTopics`) and publishes the database's head every second (`HeadBeacon`, by which
    workers know they are current); a master standing by does none of this.
    """
    from decnet.ttp.store.database import DatabaseRuleStore  # SQLAlchemy: database runs only
    from decnet.ttp.store.database.jetstream import NatsNames

    names = None if nats_url is None else NatsNames(nats_prefix)

    async def sync(db_store: RuleStore, fs_store: FilesystemRuleStore,
                   synced: Callable[[], None]) -> None:
        assert isinstance(db_store, DatabaseRuleStore)
        publishing: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()

        def on_role(role: str) -> None:
            nonlocal publishing
            if role != "idle":
                announce(role)
            if nats_url is None or names is None:
                return
            if role == "active" and publishing is None:
                publishing = loop.create_task(publish(db_store, nats_url, names, publish_poll),
                                              name="publish")
            elif role != "active" and publishing is not None:
                publishing.cancel()
                publishing = None

        def on_reconciled(written: int, deleted: int) -> None:
            log.info("reconciled: %d rule(s) written, %d deleted", written, deleted)
            synced()

        try:
            await db_store.sync_from_filesystem(fs_store, updated_by=updated_by,
                                                on_role=on_role, on_reconciled=on_reconciled)
        finally:
            await cancel_and_wait(publishing, logger=log)

    return sync


async def publish(db_store: RuleStore, nats_url: str, names: NatsNames,
                  poll_interval: float | None = None) -> None:
    """The lease holder's publishing: the change stream, the rule topics and the head
    beacon, until cancelled (`poll_interval`: the publisher's, None for its default)."""
    from decnet.swarm.rule_topics import RuleTopics  # nats-py: with --nats only
    from decnet.ttp.store.database import DatabaseRuleStore
    from decnet.ttp.store.database.beacon import HeadBeacon
    from decnet.ttp.store.database.jetstream import ChangePublisher

    assert isinstance(db_store, DatabaseRuleStore)
    topics = RuleTopics(nats_url, names)
    publisher = ChangePublisher(db_store.repo, nats_url, names, announce=topics,
                                poll_interval=poll_interval)
    beacon = HeadBeacon(db_store.repo, nats_url, names)
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(publisher.run(), name="publish-changes"),
             loop.create_task(topics.run(), name="publish-rule-topics"),
             loop.create_task(beacon.run(), name="publish-head-beacon")]
    try:
        await asyncio.gather(*tasks)
    finally:
        await cancel_and_wait(*tasks, logger=log)


async def main_async(rules_dir: Path, db_url: str, updated_by: str, *,
                     admin_http: tuple[str, int] | None = None,
                     nats_url: str | None = None,
                     nats_prefix: str = NATS_DEFAULT_PREFIX,
                     publish_poll: float | None = None) -> int:
    fs_store = filesystem_store(rules_dir)
    db_store = database_store(db_url)
    fleet = None
    if nats_url is not None:
        from decnet.swarm.fleet import FleetSource  # nats-py: with --nats only
        from decnet.ttp.store.database.jetstream import NatsNames

        fleet = FleetSource(nats_url, NatsNames(nats_prefix))
    return await run_master(fs_store, db_store, database_sync(
        updated_by, nats_url=nats_url, nats_prefix=nats_prefix, publish_poll=publish_poll),
        admin_http=admin_http,
        fleet=fleet)
