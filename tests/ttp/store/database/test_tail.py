"""`tail_db`: a worker's store follows changes other processes make to the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from decnet.ttp.constants import NOTIFY_CHANNEL
from decnet.ttp.errors import StoreError
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.store.base import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    STATE,
    RuleChange,
    RuleState,
    StateName,
)
from decnet.ttp.store.impl.database import DatabaseRuleStore, notified_revision
from decnet.ttp.store.sql import migrate
from decnet.ttp.store.sql.repository import RuleRepository
from tests.ttp.store.databases import fresh_postgres
from tests.ttp.store.helpers import open_store, seed, tailing
from tests.waiting import next_change, no_change, poll

FAST_POLL = 0.05


async def test_tail_carries_definitions_states_deletions_and_expiry(db_url: str) -> None:
    async with open_store(db_url) as writer, tailing(db_url) as worker:
        changes = worker.subscribe_changes()
        await seed(writer, "R0001")
        change = await next_change(changes)
        assert change.change_kind == DEFINITION and change.rule_id == "R0001"
        assert isinstance(change.new_value, CompiledRule)
        assert change.new_value.rule_version == 1
        assert change.new_value.description

        await seed(writer, "R0001", version=2)
        change = await next_change(changes)
        assert isinstance(change.new_value, CompiledRule) and change.new_value.rule_version == 2

        await writer.set_state("R0001", RuleState(StateName.CLIPPED, confidence_max=0.3,
                                                  reason="noisy"), "alice")
        change = await next_change(changes)
        assert change == RuleChange(STATE, "R0001", await writer.get_state("R0001"))

        await writer.clear_state("R0001", "alice")
        change = await next_change(changes)
        assert (change.change_kind, change.new_value) == (STATE, DEFAULT_STATE)

        soon = datetime.now(UTC) + timedelta(seconds=0.5)
        await writer.set_state("R0001", RuleState(StateName.DISABLED, expires_at=soon), "bob")
        change = await next_change(changes)
        assert isinstance(change.new_value, RuleState)
        assert change.new_value.state is StateName.DISABLED
        revert = await next_change(changes, timeout=5)  # by whichever store's timer won
        assert (revert.change_kind, revert.rule_id, revert.new_value) == \
            (STATE, "R0001", DEFAULT_STATE)

        await writer.delete_rule("R0001")
        change = await next_change(changes)
        assert change.is_deletion and change.rule_id == "R0001"
        await no_change(changes, within=0.3)
        assert await worker.load_compiled() == []
        assert worker.stats.changes_applied >= 6
        assert worker.stats.poll_errors == 0


async def test_tail_does_not_replay_history(db_url: str) -> None:
    async with open_store(db_url) as writer:
        for n in range(1, 4):
            await seed(writer, f"R000{n}")
        await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        async with tailing(db_url) as worker:
            changes = worker.subscribe_changes()
            await no_change(changes, within=0.3)
            assert len(await worker.load_compiled()) == 3
            await seed(writer, "R0004")
            assert (await next_change(changes)).rule_id == "R0004"


async def test_own_writes_are_announced_once_with_the_tail_running(db_url: str) -> None:
    async with tailing(db_url) as store:
        changes = store.subscribe_changes()
        await seed(store, "R0001")
        await store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        await store.clear_state("R0001", "alice")
        await store.delete_rule("R0001")
        kinds = [(await next_change(changes)).change_kind for _ in range(4)]
        assert kinds == [DEFINITION, STATE, STATE, DELETED]
        await poll(lambda: store.stats.watermark == 4, message="tail to pass its own writes")
        await no_change(changes, within=0.3)


async def test_catch_up_in_batches_keeps_order(db_url: str) -> None:
    async with open_store(db_url) as writer, open_store(db_url) as worker:
        worker.tail.batch = 3
        changes = worker.subscribe_changes()
        ids = [f"R{n:04d}" for n in range(1, 11)]
        for rule_id in ids:
            await seed(writer, rule_id)
        assert await worker.poll_once() == 10
        assert [(await next_change(changes)).rule_id for _ in ids] == ids


async def test_a_watermark_older_than_the_log_resyncs(db_url: str) -> None:
    async with open_store(db_url) as writer, open_store(db_url) as worker:
        await seed(writer, "R0001")
        await worker.poll_once()
        changes = worker.subscribe_changes()
        for n in range(2, 7):
            await seed(writer, f"R000{n}")
        await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        assert await writer.repo.prune_change_log(keep=2) > 0
        await worker.poll_once()
        change = await next_change(changes)
        assert (change.change_kind, change.rule_id, change.new_value) == (RESYNC, "*", None)
        await no_change(changes, within=0.2)
        assert worker.stats.resyncs == 1
        rules = await worker.load_compiled()
        assert len(rules) == 6 and rules[0].state.state is StateName.DISABLED
        await seed(writer, "R0007")  # and it follows on from the new position
        await worker.poll_once()
        assert (await next_change(changes)).rule_id == "R0007"


async def test_the_change_log_is_pruned_to_its_retention(db_url: str) -> None:
    repo = RuleRepository(db_url, change_log_retention=20)
    store = DatabaseRuleStore(repo)
    try:
        for n in range(60):
            await store.set_state("R0001", RuleState(StateName.DISABLED, reason=str(n)), "a")
        oldest = await repo.oldest_logged_revision()
        head = await repo.head_revision()
        assert oldest is not None and head - oldest + 1 <= 20 + 2
    finally:
        await store.stop()
        await repo.dispose()


async def test_an_idle_poll_is_one_cheap_query(server_db_url: str) -> None:
    async with open_store(server_db_url) as writer, open_store(server_db_url) as worker:
        for n in range(1, 21):
            await seed(writer, f"R{n:04d}")
        await worker.poll_once()
        before = worker.repo.statements
        for _ in range(5):
            assert await worker.poll_once() == 0
        assert worker.repo.statements - before == 5
        assert worker.stats.polls >= 6


@pytest.mark.postgres
async def test_postgres_notifications_wake_the_tail_long_before_the_poll() -> None:
    async with fresh_postgres() as url, open_store(url) as writer, \
            tailing(url, poll_interval=30.0) as worker:
        changes = worker.subscribe_changes()
        await poll(lambda: worker.stats.polls >= 2, message="listener's catch-up poll")
        await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        change = await next_change(changes, timeout=2.0)
        assert change.rule_id == "R0001"
        await seed(writer, "R0002")
        assert (await next_change(changes, timeout=2.0)).rule_id == "R0002"
        assert worker.stats.notifications >= 2


@pytest.mark.postgres
async def test_postgres_without_listen_polls_only() -> None:
    async with fresh_postgres() as url, open_store(url) as writer:
        worker = DatabaseRuleStore(url)
        await worker.start()
        worker.start_tail(0.1, listen=False)
        try:
            changes = worker.subscribe_changes()
            await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
            assert (await next_change(changes)).rule_id == "R0001"
            assert worker.stats.notifications == 0
        finally:
            await worker.stop()


@pytest.mark.postgres
async def test_postgres_a_notification_is_read_with_one_statement() -> None:
    """The notified revision is read straight from the change log: no revision-row query."""
    async with fresh_postgres() as url, open_store(url) as writer, \
            tailing(url, poll_interval=30.0) as worker:
        changes = worker.subscribe_changes()
        await poll(lambda: worker.stats.polls >= 2, message="listener's catch-up poll")
        before, polls = worker.repo.statements, worker.stats.polls
        await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        assert (await next_change(changes, timeout=2.0)).rule_id == "R0001"
        await poll(lambda: worker.stats.watermark == 1, message="the watermark to move")
        assert worker.repo.statements - before == 1
        assert worker.stats.polls == polls  # no poll of the revision row was needed


@pytest.mark.postgres
async def test_postgres_a_notification_is_only_a_hint() -> None:
    """Old, future or unreadable revisions in a payload never lose or invent a change."""
    import asyncpg

    from decnet.ttp.constants import NOTIFY_CHANNEL

    async with fresh_postgres() as url, open_store(url) as writer, \
            tailing(url, poll_interval=30.0) as worker:
        changes = worker.subscribe_changes()
        await poll(lambda: worker.stats.polls >= 2, message="listener's catch-up poll")
        await seed(writer, "R0001")
        assert (await next_change(changes, timeout=2.0)).rule_id == "R0001"
        await poll(lambda: worker.stats.watermark == 1, message="the watermark to move")
        conn = await asyncpg.connect(worker.repo.asyncpg_dsn())
        try:
            # Not past the watermark: nothing is read. Unreadable: a full poll (one
            # statement, nothing moved). Whether the tail sees them apart or together,
            # that is one statement in all.
            before, polls = worker.repo.statements, worker.stats.polls
            await conn.execute("SELECT pg_notify($1, '1')", NOTIFY_CHANNEL)
            await conn.execute("SELECT pg_notify($1, 'not a revision')", NOTIFY_CHANNEL)
            await poll(lambda: worker.stats.polls == polls + 1, message="the full poll")
            assert worker.repo.statements - before == 1
            # Past anything committed: the log read finds nothing, and the revision row
            # decides (no resync, nothing announced).
            await conn.execute("SELECT pg_notify($1, '999')", NOTIFY_CHANNEL)
            await poll(lambda: worker.stats.polls == polls + 2, message="the fallback poll")
            await no_change(changes, within=0.2)
            assert worker.stats.resyncs == 0 and worker.stats.watermark == 1
        finally:
            await conn.close()
        await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        change = await next_change(changes, timeout=2.0)
        assert (change.change_kind, change.rule_id) == (STATE, "R0001")
        assert worker.stats.poll_errors == 0


BROKEN_YAML = "rule_id: R0001\nrule_version: 2\nemit: []\n"


async def test_a_new_revision_that_does_not_compile_is_announced_as_a_deletion(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Every worker converges on "absent", whether it follows the tail or loads afresh."""
    async with open_store(db_url) as writer, tailing(db_url) as worker:
        changes = worker.subscribe_changes()
        await seed(writer, "R0001")
        assert (await next_change(changes)).change_kind == DEFINITION
        assert [r.rule_id for r in await worker.load_compiled()] == ["R0001"]

        # A row edited by hand (or by another tool) into something that does not compile.
        await writer.repo.upsert_rule("R0001", 2, BROKEN_YAML, source_path="R0001.yaml",
                                      updated_by="hand")
        assert await next_change(changes) == RuleChange(DELETED, "R0001", None)
        assert "R0001" in worker.problems
        assert any("R0001" in r.getMessage() and r.levelname == "ERROR"
                   for r in caplog.records)
        assert worker.cached_rules() == []
        assert await worker.load_compiled() == []
        async with open_store(db_url) as fresh:  # what a worker that starts now sees
            assert await fresh.load_compiled() == []
        await no_change(changes, within=0.3)

        await writer.delete_rule("R0001")  # already absent here: no second deletion
        await poll(lambda: worker.stats.watermark == 3, message="the tail to pass the delete")
        await no_change(changes, within=0.3)
        assert "R0001" not in worker.problems

        await seed(writer, "R0001", version=3)  # a good version comes back
        change = await next_change(changes)
        assert change.change_kind == DEFINITION
        assert isinstance(change.new_value, CompiledRule) and change.new_value.rule_version == 3
        await writer.repo.upsert_rule("R0001", 4, BROKEN_YAML, source_path="R0001.yaml",
                                      updated_by="hand")
        assert await next_change(changes) == RuleChange(DELETED, "R0001", None)
        await seed(writer, "R0001", version=5)  # fixed: a definition again
        change = await next_change(changes)
        assert isinstance(change.new_value, CompiledRule) and change.new_value.rule_version == 5
        assert "R0001" not in worker.problems
        assert [r.rule_version for r in await worker.load_compiled()] == [5]


async def _migrated_file(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url)
    return url


async def test_one_cancel_stops_a_tail_woken_at_the_same_moment(tmp_path: Path) -> None:
    """Python 3.11's `wait_for` returns a wake-up that lands together with the cancel
    instead of raising it: the tail's loop must stop all the same."""
    url = await _migrated_file(tmp_path / "rules.db")
    async with open_store(url) as worker:
        task = worker.start_tail(3600.0, listen=False)
        await poll(lambda: worker.stats.last_sync is not None, message="the first poll")
        # idle now: waiting for a wake-up, the next poll an hour away
        worker.tail.reconsider()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def test_a_replaced_sqlite_file_is_refused_and_reported(tmp_path: Path) -> None:
    url = await _migrated_file(tmp_path / "rules.db")
    await _migrated_file(tmp_path / "other.db")
    async with open_store(url) as writer, tailing(url) as worker:
        await seed(writer, "R0001")
        await poll(lambda: worker.stats.watermark == 1, message="the first rule")
        os.replace(tmp_path / "other.db", tmp_path / "rules.db")  # a restore by rename
        await poll(lambda: worker.stats.database_problem is not None,
                   message="the replaced file reported")
        assert "was replaced" in (worker.stats.database_problem or "")
        assert "restart" in (worker.stats.database_problem or "")
        with pytest.raises(StoreError, match="was replaced"):
            await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        assert [r.rule_id for r in worker.cached_rules()] == ["R0001"]  # last good rules
    for name in ("rules.db-wal", "rules.db-shm"):  # the old file's, as the message says
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / name).unlink()
    async with open_store(url) as restarted:  # a restarted process uses the new file
        assert await restarted.load_compiled() == []
        assert await restarted.list_states() == {}


@pytest.mark.postgres
async def test_a_recreated_server_database_is_followed() -> None:
    async with fresh_postgres() as url, tailing(url) as worker:
        async with open_store(url) as writer:
            await seed(writer, "R0001")
            await seed(writer, "R0002")
        await poll(lambda: worker.stats.watermark == 2, message="the rules")
        changes = worker.subscribe_changes()
        await migrate.downgrade(url, "base")  # dropped and created again, empty
        await migrate.upgrade(url)
        async with open_store(url) as writer:
            for n in (3, 4, 5):
                await seed(writer, f"R000{n}")  # past the old watermark: a new database
        assert (await next_change(changes, timeout=5)).change_kind == RESYNC
        assert worker.stats.database_replacements == 1
        assert [r.rule_id for r in await worker.load_compiled()] == ["R0003", "R0004",
                                                                     "R0005"]


async def test_a_deleted_sqlite_file_is_reported_not_recreated(tmp_path: Path) -> None:
    path = tmp_path / "rules.db"
    url = await _migrated_file(path)
    async with open_store(url) as writer, tailing(url) as worker:
        await seed(writer, "R0001")
        await poll(lambda: worker.stats.watermark == 1, message="the first rule")
        for name in ("rules.db", "rules.db-wal", "rules.db-shm"):
            with contextlib.suppress(FileNotFoundError):
                (tmp_path / name).unlink()
        await poll(lambda: worker.stats.database_problem is not None,
                   message="the missing file reported")
        assert "decnet-ttp db upgrade" in (worker.stats.database_problem or "")
        errors = worker.stats.poll_errors
        await poll(lambda: worker.stats.poll_errors > errors, message="polls keep failing")
        assert not path.exists()
        with pytest.raises(StoreError, match="there is no rule database"):
            await writer.set_state("R0001", RuleState(StateName.DISABLED), "alice")
        assert not path.exists()
        assert [r.rule_id for r in worker.cached_rules()] == ["R0001"]  # last good rules

        await migrate.upgrade(url)  # an operator creates it again: another file
        await poll(lambda: "was replaced" in (worker.stats.database_problem or ""),
                   message="the new file refused")


@pytest.mark.postgres
async def test_a_notify_payload_beyond_a_revision_is_no_outage(
        caplog: pytest.LogCaptureFixture) -> None:
    import asyncpg

    async with fresh_postgres() as url, open_store(url) as writer, \
            tailing(url, poll_interval=30) as worker:
        changes = worker.subscribe_changes()
        await poll(lambda: worker.stats.polls >= 1, message="the first poll")
        conn = await asyncpg.connect(worker.repo.asyncpg_dsn())
        try:
            for payload in ("99999999999999999999", "9223372036854775808", "-1", "x", ""):
                await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload)
        finally:
            await conn.close()
        await poll(lambda: worker.stats.notifications >= 5, message="the notifications")
        await seed(writer, "R0001")
        change = await next_change(changes)
        assert (change.change_kind, change.rule_id) == (DEFINITION, "R0001")
        assert worker.stats.poll_errors == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("payload", "revision"), [
    ("1", 1), ("42", 42), (str(2**63 - 1), 2**63 - 1), (str(2**63), None),
    ("9" * 30, None), ("0", None), ("-3", None), ("+3", None), (" 3", None), ("3.0", None),
    ("", None), ("\u0663", None), ("x", None),
])
def test_notified_revision(payload: str, revision: int | None) -> None:
    assert notified_revision(payload) == revision
