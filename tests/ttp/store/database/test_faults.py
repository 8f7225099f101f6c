"""Database faults through a TCP proxy the test controls: cut connections, outages."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from decnet.ttp.errors import StoreError
from decnet.ttp.store.base import (
    DEFAULT_STATE,
    STATE,
    RuleChange,
    RuleState,
    StateName,
    utcnow,
)
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql.repository import RuleRepository
from tests.tcp_proxy import TcpProxy
from tests.ttp.store.databases import render
from tests.ttp.store.helpers import (
    has_version,
    open_store,
    rule_yaml,
    rules_dir,
    running,
    seed,
    write,
)
from tests.waiting import next_change, no_change, poll

MASTER_LOGGER = "decnet.ttp.store.database.master"
STORE_LOGGER = "decnet.ttp.store.database.store"
EXPIRY_LOGGER = "decnet.ttp.store.expiry"

OLD = RuleState(StateName.CLIPPED, confidence_max=0.7, reason="old reason")
NEW = RuleState(StateName.DISABLED, reason="new reason")


@contextlib.asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of the database of `url`, and the URL that goes through it."""
    parsed = make_url(url)
    async with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 0) as proxy:
        yield proxy, render(parsed.set(host=proxy.host, port=proxy.port))


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "commit-unanswered"])
async def test_a_cut_during_set_state_raises_and_is_all_or_nothing(
        server_db_url: str, after: bool) -> None:
    async with open_store(server_db_url) as direct, proxied(server_db_url) as (proxy, url):
        await direct.set_state("R0001", OLD, "alice")
        old = await direct.get_state("R0001")
        store = DatabaseRuleStore(url)
        try:
            await store.get_state("R0001")  # connected through the proxy
            changes = store.subscribe_changes()
            # The message that commits: the COMMIT after the statements of the
            # transaction (the state, its history entry, the change-log entry).
            cut = proxy.cut_when(b"COMMIT", after=after, replies=1)
            with pytest.raises(StoreError) as caught:
                await store.set_state("R0001", NEW, "bob")
            assert cut.is_set()
            assert caught.value.__cause__ is not None
            await no_change(changes, within=0.2)  # nothing announced without a commit
            now = await direct.get_state("R0001")
            if after:
                assert (now.state, now.reason, now.set_by, now.confidence_max) == \
                    (StateName.DISABLED, "new reason", "bob", None)
            else:
                assert now == old
            await store.set_state("R0001", NEW, "carol")  # and the store recovers
            assert (await direct.get_state("R0001")).set_by == "carol"
            assert (await next_change(changes)).change_kind == STATE
        finally:
            await store.stop()


async def test_writes_after_idle_connections_were_cut_succeed_first_time(
        server_db_url: str) -> None:
    """Pooled connections cut while idle are replaced on checkout, before a write is sent
    (writes are never retried: a cut commit's outcome is unknown)."""
    async with open_store(server_db_url) as direct, proxied(server_db_url) as (proxy, url):
        store = DatabaseRuleStore(url)
        try:
            changes = store.subscribe_changes()
            await seed(store, "R0001")  # a connection pooled by each engine
            await store.set_state("R0001", OLD, "alice")
            await store.clear_state("R0001", "alice")
            assert await store.poll_once() == 0
            for _ in range(3):
                await next_change(changes)
            assert proxy.live >= 1
            proxy.cut()  # every idle pooled connection is now dead; new ones connect
            await store.set_state("R0001", NEW, "bob")
            assert (await direct.get_state("R0001")).set_by == "bob"
            proxy.cut()
            await store.clear_state("R0001", "bob")
            assert await direct.get_state("R0001") == DEFAULT_STATE
            proxy.cut()
            await seed(store, "R0001", version=2)
            assert await has_version(direct, "R0001", 2)
            kinds = [(await next_change(changes)).change_kind for _ in range(3)]
            assert kinds == [STATE, STATE, "definition"]
            proxy.cut()  # a read is not pinged first: it is retried once on a new connection
            await store.poll_once()
            assert store.stats.watermark == await direct.repo.head_revision()
        finally:
            await store.stop()


async def test_cuts_at_every_point_of_set_state_leave_old_or_new(server_db_url: str) -> None:
    """Cut each of the statements of a write in turn: never half a row."""
    markers = [b"ttp_revision", b"ttp_rule_state", b"ttp_change_log", b"COMMIT"]
    async with open_store(server_db_url) as direct, proxied(server_db_url) as (proxy, url):
        store = DatabaseRuleStore(url)
        try:
            for n, marker in enumerate(markers):
                before = RuleState(StateName.CLIPPED, confidence_max=0.5, reason=f"before {n}")
                await direct.set_state("R0001", before, "alice")
                old = await direct.get_state("R0001")
                await store.get_state("R0001")
                proxy.cut_when(marker)
                with contextlib.suppress(StoreError):
                    await store.set_state("R0001", RuleState(StateName.DISABLED,
                                                             reason=f"after {n}"), "bob")
                now = await direct.get_state("R0001")
                assert now == old or (now.state, now.reason, now.set_by) == \
                    (StateName.DISABLED, f"after {n}", "bob"), marker
        finally:
            await store.stop()


async def test_the_tail_survives_an_outage_and_catches_up(server_db_url: str) -> None:
    async with open_store(server_db_url) as writer, proxied(server_db_url) as (proxy, url):
        await seed(writer, "R0001")
        await seed(writer, "R0002")
        worker = DatabaseRuleStore(url)
        await worker.start()
        assert len(await worker.load_compiled()) == 2  # as a worker's engine does first
        worker.start_tail(0.1)
        try:
            changes = worker.subscribe_changes()
            await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
            assert (await next_change(changes)).rule_id == "R0001"

            proxy.outage()
            await poll(lambda: worker.stats.poll_errors >= 3, message="polls to fail")
            await seed(writer, "R0003")
            await writer.delete_rule("R0002")
            await writer.clear_state("R0001", "alice")
            await writer.set_state("R0003", RuleState(StateName.CLIPPED, confidence_max=0.1),
                                   "bob")
            kept = await worker.load_compiled()  # the last good rules, while unreachable
            assert [r.rule_id for r in kept] == ["R0001", "R0002"]
            assert kept[0].state.state is StateName.DISABLED
            await no_change(changes, within=0.3)

            proxy.resume()
            seen = [await next_change(changes, timeout=5) for _ in range(4)]
            assert [(c.change_kind, c.rule_id) for c in seen] == [
                ("definition", "R0003"), ("deleted", "R0002"), ("state", "R0001"),
                ("state", "R0003")]
            assert seen[2].new_value == DEFAULT_STATE
            rules = {r.rule_id: r for r in await worker.load_compiled()}
            assert set(rules) == {"R0001", "R0003"}
            assert rules["R0003"].state.state is StateName.CLIPPED
        finally:
            await worker.stop()


def _records(caplog: pytest.LogCaptureFixture, logger: str, text: str,
             level: int = logging.WARNING) -> list[logging.LogRecord]:
    """Records of `logger` at exactly `level` whose message contains `text`."""
    return [r for r in caplog.records
            if r.name == logger and r.levelno == level and text in r.getMessage()]


async def test_the_master_survives_an_outage_and_projects_the_edit_made_during_it(
        server_db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=MASTER_LOGGER)
    async with open_store(server_db_url) as direct, \
            proxied(server_db_url) as (proxy, url), rules_dir() as fs:
        directory = Path(fs.directory)
        write(directory, "R0001", rule_yaml("R0001"))
        await fs.start()
        master = DatabaseRuleStore(url)
        roles: list[str] = []
        try:
            async with running(master.sync_from_filesystem(fs, on_role=roles.append)) as task:
                await poll(lambda: has_version(direct, "R0001", 1), message="R0001 stored")
                assert master.master_role == "active"

                proxy.outage()
                write(directory, "R0001", rule_yaml("R0001", version=2))  # edited meanwhile
                await poll(lambda: master.master_role == "standby" or task.done(),
                           message="the master to stand by")
                await poll(lambda: len(_records(caplog, MASTER_LOGGER, "the master's rule database",
                                                logging.DEBUG)) >= 3 or task.done(),
                           message="the master to retry")
                assert not task.done()
                assert master.master_role == "standby"

                proxy.resume()
                await poll(lambda: has_version(direct, "R0001", 2), timeout=15,
                           message="the edit made during the outage to land")
                await poll(lambda: master.master_role == "active", message="active again")
                write(directory, "R0002", rule_yaml("R0002"))  # and it carries on projecting
                await poll(lambda: has_version(direct, "R0002", 1), message="R0002 projected")
                assert not task.done()
            assert roles[0] == "active" and "standby" in roles and roles[-2] == "active"
            # One outage, one warning (and one line when it is over); the retries at DEBUG.
            assert len(_records(caplog, MASTER_LOGGER, "the master's rule database")) == 2
        finally:
            await master.stop()


async def test_get_state_never_raises_while_the_database_is_away(
        server_db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with open_store(server_db_url) as direct, proxied(server_db_url) as (proxy, url):
        await direct.set_state("R0001", OLD, "alice")
        soon = utcnow() + timedelta(seconds=0.5)
        await direct.set_state("R0002", RuleState(StateName.DISABLED, expires_at=soon), "a")
        old = await direct.get_state("R0001")
        store = DatabaseRuleStore(url)
        await store.start()  # its view: R0001 and R0002 as they are now
        try:
            proxy.outage()
            for _ in range(3):
                assert await store.get_state("R0001") == old  # the last known state
                assert await store.get_state("R0404") == RuleState()
            await poll(lambda: utcnow() > soon, message="R0002 to expire")
            assert await store.get_state("R0002") == RuleState()  # known, but expired
            with pytest.raises(StoreError):  # a write still fails loudly
                await store.set_state("R0001", NEW, "bob")
            with pytest.raises(StoreError):  # and so does the strict read of operator tools
                await store.read_state("R0001")
            # once per outage
            assert len(_records(caplog, STORE_LOGGER, "reading the rule database")) == 1

            proxy.resume()
            await direct.set_state("R0001", NEW, "carol")
            now = await store.get_state("R0001")  # read from the database again
            assert (now.state, now.set_by) == (StateName.DISABLED, "carol")
            assert await store.read_state("R0001") == now
            assert await store.read_state("R0002") == RuleState()  # expired: the default
        finally:
            await store.stop()


async def test_a_revert_failing_inside_get_state_does_not_raise(server_db_url: str) -> None:
    """The read works, the revert of the expired state it found is cut: the default state
    is returned, and the expiry timer retries the revert until it lands (announced once)."""
    async with proxied(server_db_url) as (proxy, url):
        repo = RuleRepository(server_db_url)
        store = DatabaseRuleStore(url)  # not started: no view, no timer armed yet
        try:
            past = utcnow() - timedelta(seconds=5)
            await repo.write_state("R0001", RuleState(StateName.DISABLED, expires_at=past,
                                                      set_by="alice", set_at=past))
            changes = store.subscribe_changes()
            cut = proxy.cut_when(b"DELETE FROM ttp_rule_state")
            assert await store.get_state("R0001") == RuleState()
            assert cut.is_set()
            change = await next_change(changes, timeout=10)
            assert change == RuleChange(STATE, "R0001", DEFAULT_STATE)
            assert await repo.read_state("R0001") is None
            await no_change(changes)
        finally:
            await store.stop()
            await repo.dispose()


async def test_an_expiry_revert_during_an_outage_is_logged_once_per_rule(
        server_db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=EXPIRY_LOGGER)
    ids = ("R0001", "R0002")
    async with proxied(server_db_url) as (proxy, url):
        writer = RuleRepository(server_db_url)  # writes without arming timers of its own
        store = DatabaseRuleStore(url, expiry_retry=(0.02, 0.1))
        await store.start()
        try:
            changes = store.subscribe_changes()
            for outage in (1, 2):
                soon = utcnow() + timedelta(seconds=1)  # after the outage below has begun
                for rule_id in ids:
                    await writer.write_state(rule_id, RuleState(
                        StateName.DISABLED, expires_at=soon, set_by="alice", set_at=utcnow()))
                await store.poll_once()  # the store learns them and arms its timers
                learned = [await next_change(changes) for _ in ids]
                assert sorted(c.rule_id for c in learned) == list(ids)
                proxy.outage()

                def retried(rule_id: str, outage: int = outage) -> bool:
                    return len(_records(caplog, EXPIRY_LOGGER, rule_id,
                                        logging.DEBUG)) >= 3 * outage

                await poll(lambda: all(retried(rule_id) for rule_id in ids), timeout=10,
                           message="several failed reverts per rule")
                for rule_id in ids:
                    [*warned] = _records(caplog, EXPIRY_LOGGER, rule_id)
                    assert len(warned) == outage, rule_id  # once per rule per outage
                    assert not warned[-1].exc_info  # a reason, not a traceback
                proxy.resume()
                reverted = [await next_change(changes, timeout=5) for _ in ids]
                assert sorted(c.rule_id for c in reverted) == list(ids)
                assert {c.new_value for c in reverted} == {DEFAULT_STATE}
        finally:
            await store.stop()
            await writer.dispose()
