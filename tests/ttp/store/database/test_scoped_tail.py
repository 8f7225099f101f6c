"""Scoped states reach other processes through the change log, and survive restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event
from decnet.vocabulary import SCOPED, HistoryAction, RuleState, Scope, StateName
from tests.ttp.store.helpers import open_store, seed, tailing
from tests.waiting import next_change, no_change, poll

DECKY_3 = Scope.parse("decky=decky-03")


async def test_a_worker_tail_carries_scoped_states_and_their_expiry(db_url: str) -> None:
    async with open_store(db_url) as writer, tailing(db_url) as worker:
        await seed(writer, "R0001")
        await poll(lambda: worker.stats.watermark == 1)
        changes = worker.subscribe_changes()
        soon = datetime.now(UTC) + timedelta(seconds=0.5)
        await writer.set_scoped_state("R0001", DECKY_3,
                                      RuleState(StateName.DISABLED, expires_at=soon), "a")
        change = await next_change(changes)
        assert change.change_kind == SCOPED and isinstance(change.new_value, tuple)
        [scoped] = change.new_value
        assert scoped.scope == DECKY_3 and scoped.state.state is StateName.DISABLED
        revert = await next_change(changes, timeout=5)
        assert revert.change_kind == SCOPED and revert.new_value == ()
        await no_change(changes)
        expired = [e for e in await writer.history("R0001")
                   if e.action is HistoryAction.EXPIRED]
        assert len(expired) == 1  # two processes armed the timer; one revert won


async def test_scoped_states_survive_a_restart_and_drive_the_engine(db_url: str) -> None:
    async with open_store(db_url) as store:
        await seed(store, "R0001")
        await store.set_scoped_state("R0001", DECKY_3, RuleState(StateName.DISABLED), "a")
    async with open_store(db_url) as again:
        rules = await again.load_compiled()
        [rule] = rules
        assert [s.scope for s in rule.scoped] == [DECKY_3]
        engine = RuleEngine(rules)

        def event(decky: str) -> Event:
            return Event.from_mapping({"source_kind": "command", "source_id": decky,
                                    "payload": {"command_text": "uname -a"},
                                    "decky_id": decky})

        assert engine.evaluate(event("decky-03")) == []
        assert {t.rule_id for t in engine.evaluate(event("decky-04"))} == {"R0001"}
        changes = again.subscribe_changes()
        await again.set_scoped_state("R0001", Scope.parse("decky=decky-04"),
                                     RuleState(StateName.CLIPPED, confidence_max=0.1), "b")
        assert engine.apply(await next_change(changes))
        tags = engine.evaluate(event("decky-04"))
        assert tags and {tag.confidence for tag in tags} == {0.1}
        assert engine.evaluate(event("decky-03")) == []
