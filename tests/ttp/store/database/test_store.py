"""Database store on real databases: durability, atomicity, schema, round trips."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from decnet.ttp.errors import SchemaOutdatedError, StoreError
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import DEFAULT_STATE, RuleState, StateName
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql import migrate
from decnet.ttp.store.sql.models import Base, ChangeLogRow, RuleRow
from decnet.ttp.store.sql.repository import RuleRepository, schema_head
from decnet.ttp.store.sql.schema import alembic_revisions, schema_revisions
from tests.ttp.store.databases import FRESH_DATABASES
from tests.ttp.store.helpers import open_store, rule_yaml, seed
from tests.waiting import next_change, no_change, poll

REPO_ROOT = Path(__file__).resolve().parents[4]


def run_python(code: str) -> str:
    """Run `code` in a new interpreter (a real process restart); its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_schema_head_matches_the_shipped_migrations() -> None:
    assert migrate.head() == schema_head()
    assert schema_revisions() == alembic_revisions()  # read from file names, without Alembic


async def test_state_survives_a_process_restart(db_url: str) -> None:
    run_python(f"""
        import asyncio
        from datetime import datetime, timedelta, UTC
        from decnet.ttp.store.base import RuleState, StateName
        from decnet.ttp.store.impl.database import DatabaseRuleStore

        async def main():
            store = DatabaseRuleStore({db_url!r})
            until = datetime.now(UTC) + timedelta(hours=4)
            await store.set_state("R0007", RuleState(StateName.DISABLED, expires_at=until,
                                                     reason="noisy on decky-3"), "alice")
            await store.stop()

        asyncio.run(main())
    """)
    out = run_python(f"""
        import asyncio
        from decnet.ttp.store.impl.database import DatabaseRuleStore

        async def main():
            store = DatabaseRuleStore({db_url!r})
            state = await store.get_state("R0007")
            print(state.state.value, state.reason, state.set_by, state.expires_at is not None)
            await store.stop()

        asyncio.run(main())
    """)
    assert out.split() == ["disabled", "noisy", "on", "decky-3", "alice", "True"]


async def test_a_fresh_store_sees_the_same_state_and_rules(db_url: str) -> None:
    expires = datetime(2099, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with open_store(db_url) as first:
        await seed(first)
        await first.set_state("R0001", RuleState(StateName.CLIPPED, confidence_max=0.25,
                                                 expires_at=expires, reason="r"), "alice")
        written = await first.get_state("R0001")
        rules_first = await first.load_compiled()
    async with open_store(db_url) as second:
        assert await second.get_state("R0001") == written
        rules_second = await second.load_compiled()
        assert rules_second == rules_first
        assert rules_second[0].state == written
        assert written.expires_at == expires  # microseconds survive on every database
        assert written.set_at is not None and written.set_at.microsecond == \
            (await second.get_state("R0001")).set_at.microsecond  # type: ignore[union-attr]


async def test_every_stored_field_round_trips(db_url: str) -> None:
    async with open_store(db_url) as store:
        await seed(store)
        snapshot = await store.repo.snapshot()
        [row] = snapshot.rules
        assert (row.rule_id, row.rule_version, row.source_path, row.updated_by) == \
            ("R0001", 1, "R0001.yaml", "test")
        assert row.yaml_content == rule_yaml()
        assert row.updated_at.tzinfo is UTC
        assert abs((datetime.now(UTC) - row.updated_at).total_seconds()) < 60
        [rule] = await store.load_compiled()
        original = compile_rule(rule_yaml(), source="R0001.yaml", expected_rule_id="R0001")
        assert rule == original
        assert rule.description == original.description != ""
        assert rule.review == original.review
        assert rule.source_yaml == ""  # the row holds it: shown through with_source
        assert (await store.with_source(rule)).source_yaml == rule_yaml()


async def test_identical_upsert_and_unknown_delete_are_no_ops(db_url: str) -> None:
    async with open_store(db_url) as store:
        await seed(store)
        head = await store.repo.head_revision()
        changes = store.subscribe_changes()
        await seed(store)
        assert not await store.delete_rule("R0404")
        await no_change(changes, within=0.2)
        assert await store.repo.head_revision() == head


async def test_a_malformed_stored_row_is_skipped_and_reported(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with open_store(db_url) as store:
        await seed(store, "R0001")
        await seed(store, "R0002")
        async with store.repo.engine.begin() as conn:
            await conn.execute(update(RuleRow).where(RuleRow.rule_id == "R0002").values(
                yaml_content="rule_id: R0002\nemit: []\n", revision=RuleRow.revision + 100))
        rules = await store.load_compiled()
        assert [r.rule_id for r in rules] == ["R0001"]
        assert "R0002" in store.problems
        assert any("R0002" in record.getMessage() for record in caplog.records)
        assert [r.rule_id for r in await store.load_compiled()] == ["R0001"]


async def test_an_unmigrated_database_is_refused_with_the_command(db_url: str) -> None:
    await migrate.downgrade(db_url, "base")
    store = DatabaseRuleStore(db_url)
    try:
        with pytest.raises(SchemaOutdatedError) as caught:
            await store.load_compiled()
        assert "decnet-ttp db upgrade --db" in str(caught.value)
        assert isinstance(caught.value, StoreError)
    finally:
        await store.stop()
    assert await migrate.upgrade(db_url) == schema_head()
    async with open_store(db_url) as store:
        assert await store.load_compiled() == []


async def test_a_schema_newer_than_known_is_refused(db_url: str) -> None:
    repo = RuleRepository(db_url)
    try:
        async with repo.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(SchemaOutdatedError, match="newer"):
            await repo.connect()
    finally:
        await repo.dispose()


async def test_migrations_create_exactly_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    repo = RuleRepository(db_url)
    try:
        async with repo.engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata))
    finally:
        await repo.dispose()
    assert diff == []


async def test_equal_timestamps_and_a_frozen_clock_lose_nothing(db_url: str) -> None:
    """Every row stamped with the same whole second: the tail still sees every change."""
    frozen = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    frozen_writer = DatabaseRuleStore(db_url, clock=lambda: frozen)
    async with frozen_writer as writer, open_store(db_url) as reader:
        assert isinstance(writer, DatabaseRuleStore)
        changes = reader.subscribe_changes()
        for n in range(1, 6):
            await seed(writer, f"R000{n}")
            await writer.set_state(f"R000{n}", RuleState(StateName.DISABLED), "alice")
        async with writer.repo.engine.connect() as conn:
            stamps = (await conn.execute(select(ChangeLogRow.changed_at))).scalars().all()
        assert set(stamps) == {frozen}
        assert await reader.poll_once() == 10
        seen = [(await next_change(changes)) for _ in range(10)]
        assert [(c.change_kind, c.rule_id) for c in seen[:2]] == \
            [("definition", "R0001"), ("state", "R0001")]
        assert len({(c.change_kind, c.rule_id) for c in seen}) == 10


async def test_concurrent_writers_get_distinct_gap_free_revisions(db_url: str) -> None:
    async with open_store(db_url) as one, open_store(db_url) as two:
        start = await one.repo.head_revision()

        async def write(store: DatabaseRuleStore, prefix: str) -> None:
            for n in range(10):
                await store.set_state(f"{prefix}{n}", RuleState(StateName.DISABLED), prefix)

        await asyncio.gather(write(one, "A"), write(two, "B"), write(one, "C"), write(two, "D"))
        async with one.repo.engine.connect() as conn:
            logged = (await conn.execute(select(ChangeLogRow.revision, ChangeLogRow.rule_id)
                                         .order_by(ChangeLogRow.revision))).all()
        assert [r for r, _ in logged] == list(range(start + 1, start + 41))
        assert len({rule for _, rule in logged}) == 40
        assert set(await one.list_states()) == {f"{p}{n}" for p in "ABCD" for n in range(10)}


async def test_expiry_racing_between_stores_reverts_once(db_url: str) -> None:
    async with open_store(db_url) as one, open_store(db_url) as two:
        await seed(one)
        expires = datetime.now(UTC) + timedelta(seconds=0.5)
        await one.set_state("R0001", RuleState(StateName.DISABLED, expires_at=expires), "a")
        await two.poll_once()  # two learns of it and arms its own timer
        changes_one, changes_two = one.subscribe_changes(), two.subscribe_changes()
        head = await one.repo.head_revision()

        async def both_reverted() -> bool:
            await one.poll_once()
            await two.poll_once()
            return changes_one.pending() >= 1 and changes_two.pending() >= 1  # type: ignore

        await poll(both_reverted, timeout=5, interval=0.05, message="both stores reverted")
        assert (await next_change(changes_one)).new_value == DEFAULT_STATE
        assert (await next_change(changes_two)).new_value == DEFAULT_STATE
        await one.poll_once()
        await two.poll_once()
        await no_change(changes_one, within=0.3)
        await no_change(changes_two, within=0.1)
        assert await one.repo.head_revision() == head + 1


async def test_in_memory_default_store_works_across_connections() -> None:
    async with open_store() as store:
        assert store.repo.is_memory
        await asyncio.gather(*(seed(store, f"R{n:04d}") for n in range(1, 11)),
                             *(store.set_state(f"R{n:04d}", RuleState(StateName.DISABLED), "a")
                               for n in range(1, 11)))
        rules = await store.load_compiled()
        assert len(rules) == 10
        assert {r.state.state for r in rules} == {StateName.DISABLED}


@pytest.mark.parametrize("kind", ["sqlite-file", "postgresql", "mariadb"])
async def test_a_missing_database_is_a_store_error(kind: str) -> None:
    async with FRESH_DATABASES[kind](migrate=False) as url:
        pass  # dropped on exit: the URL now names a database that does not exist
    store = DatabaseRuleStore(url if kind != "sqlite-file" else
                              "sqlite+aiosqlite:////nonexistent-dir/x/rules.db")
    try:
        with pytest.raises(StoreError):
            await store.set_state("R0001", RuleState(StateName.DISABLED), "a")
    finally:
        await store.stop()


async def test_a_first_load_is_never_older_than_the_view_the_tail_took(db_url: str) -> None:
    """A store used without `start()` (as DESIGN allows): its first `load_compiled` and
    its tail each read a snapshot; when a commit lands between the two and the tail's
    (newer) read becomes the view, the load must not return the older rules: what lies
    between would never be announced."""
    async with open_store(db_url) as writer:
        await seed(writer)
        worker = DatabaseRuleStore(db_url)
        real = worker.repo.snapshot
        reads = 0

        async def racing(*args: object, **kwargs: object) -> object:
            nonlocal reads
            reads += 1
            snapshot = await real(*args, **kwargs)  # type: ignore[arg-type]
            if reads == 1:  # the load's read is done; a commit lands, the tail takes its view
                await writer.set_state("R0001", RuleState(StateName.DISABLED, reason="race"),
                                       set_by="test")
                await worker.ensure_view()
            return snapshot

        worker.repo.snapshot = racing  # type: ignore[method-assign]
        try:
            [rule] = await worker.load_compiled()
        finally:
            await worker.stop()
        assert reads == 3  # the load's, the tail's, and the load's again
        assert rule.state.state is StateName.DISABLED
