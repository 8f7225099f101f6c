"""The state history is pruned by age by the writers, and never rewritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select

from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql.models import HistoryRow
from decnet.ttp.store.sql.repository import RuleRepository
from decnet.vocabulary import RuleState, StateName


async def test_entries_older_than_the_retention_are_pruned_by_the_writer(db_url: str) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    repo = RuleRepository(db_url, clock=clock, change_log_retention=5,
                          history_retention=timedelta(days=30))
    store = DatabaseRuleStore(repo, clock=clock)
    await store.start()
    try:
        await store.set_state("R0001", RuleState(StateName.DISABLED, reason="old"), "alice")
        first = await store.history()
        now[0] += timedelta(days=31)
        for n in range(3):
            await store.set_state("R0001", RuleState(StateName.DISABLED, reason=f"new {n}"),
                                  "bob")

        def count(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(HistoryRow)).scalar_one())

        assert await repo.run(count) == 3
        entries = await store.history()
        assert [e.reason for e in entries] == ["new 0", "new 1", "new 2"]
        assert first[0].reason == "old" and first[0] not in entries
    finally:
        await store.stop()
        await repo.dispose()
