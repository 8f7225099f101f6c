"""The state history read by person (or token) and up to a time, newest `limit` first in
the database (the console's history page reads only the rows it shows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.sql.repository import RuleRepository
from decnet.vocabulary import RuleState, StateName


async def test_history_by_person_or_token_and_until(db_url: str) -> None:
    now = [datetime(2026, 11, 1, tzinfo=UTC)]

    def clock() -> datetime:
        return now[0]

    repo = RuleRepository(db_url, clock=clock)
    store = DatabaseRuleStore(repo, clock=clock)
    await store.start()
    try:
        for n, (by, via) in enumerate([("alice", None), ("bob", "ops-token"),
                                       ("alice", None), ("carol", None)]):
            await store.set_state("R0001", RuleState(StateName.DISABLED, reason=f"r{n}"), by,
                                  via=via)
            now[0] += timedelta(minutes=1)
        reasons = [e.reason for e in await repo.read_history(by="alice")]
        assert reasons == ["r0", "r2"]
        assert [e.reason for e in await repo.read_history(by="ops-token")] == ["r1"]
        until = datetime(2026, 11, 1, 0, 1, tzinfo=UTC)
        assert [e.reason for e in await repo.read_history(until=until)] == ["r0", "r1"]
        assert [e.reason for e in await repo.read_history(by="alice", limit=1)] == ["r2"]
        assert await repo.read_history("R0002", by="alice") == []
    finally:
        await store.stop()
        await repo.dispose()
