"""Database faults through a TCP proxy the test controls: cut connections, outages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from decnet.ttp.errors import StoreError
from decnet.ttp.store.base import DEFAULT_STATE, STATE, RuleState, StateName
from decnet.ttp.store.impl.database import DatabaseRuleStore
from tests.tcp_proxy import TcpProxy
from tests.ttp.store.databases import render
from tests.ttp.store.test_database import open_store, seed
from tests.waiting import next_change, no_change, poll

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
            # The message that commits: PostgreSQL writes a state in one autocommit
            # statement; MariaDB sends COMMIT after the statements of the transaction.
            # (asyncpg prepares the statement first: its answer passes, the next is cut.)
            postgres = store.repo.dialect == "postgresql"
            commit = b"ttp_change_log" if postgres else b"COMMIT"
            cut = proxy.cut_when(commit, after=after, replies=2 if postgres else 1)
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
