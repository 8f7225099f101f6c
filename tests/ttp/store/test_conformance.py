"""The `RuleStore` contract, run on every backend."""

from __future__ import annotations

import asyncio
import gc
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from decnet.ttp.errors import InvalidRuleId
from decnet.ttp.rules.compiled import CompiledRule, Emit
from decnet.ttp.store.backend import BaseRuleStore
from decnet.ttp.store.base import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    STATE,
    RuleState,
    RuleStore,
    StateName,
)
from tests.ttp.store.helpers import remove_rule, rule_yaml, seed_rule
from tests.waiting import next_change, no_change, poll


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_empty_store_loads_nothing(rule_store: RuleStore) -> None:
    assert await rule_store.load_compiled() == []


async def test_seeded_rule_round_trips_every_field(rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    [rule] = await rule_store.load_compiled()
    assert isinstance(rule, CompiledRule)
    assert rule.rule_id == "R0001"
    assert rule.rule_version == 1
    assert rule.name == "uname_all"
    assert rule.description == 'kernel and architecture discovery, "uname -a"'
    assert rule.applies_to == frozenset({"command"})
    assert dict(rule.match_spec) == {"pattern": r"\buname\s+-a\b"}
    assert rule.emits == (
        Emit("T1082", None, "TA0007", 0.6),
        Emit("T1548", "T1548.001", "TA0004", 0.9),
    )
    assert rule.evidence_fields == ("command_text",)
    assert rule.review.author == "conformance"
    assert rule.review.references == ("https://attack.mitre.org/techniques/T1082/",)
    assert rule.state == DEFAULT_STATE
    assert (await rule_store.with_source(rule)).source_yaml == rule_yaml()
    assert rule.yaml_sha256 == hashlib.sha256(rule_yaml().encode()).hexdigest()


async def test_unknown_rule_has_default_state(rule_store: RuleStore) -> None:
    state = await rule_store.get_state("R9999")
    assert state == RuleState()
    assert state is not None


@pytest.mark.parametrize("hostile", ["", "R1.*", "R1.>", "../etc/passwd", "R 1", "x" * 65,
                                     "R1\n", "R1;DROP TABLE ttp_rule"])
async def test_get_state_never_raises_on_hostile_ids(rule_store: RuleStore, hostile: str) -> None:
    assert await rule_store.get_state(hostile) == RuleState()


@pytest.mark.parametrize("hostile", ["", "R1.*", "R1.>", "../etc/passwd", "x" * 65])
async def test_set_state_rejects_hostile_ids(rule_store: RuleStore, hostile: str) -> None:
    with pytest.raises(InvalidRuleId):
        await rule_store.set_state(hostile, RuleState(StateName.DISABLED), "alice")


async def test_set_state_stamps_persists_and_stamps_rules(rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    before = datetime.now(UTC)
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED, reason="noisy"), "alice")
    state = await rule_store.get_state("R0001")
    assert state.state is StateName.DISABLED
    assert state.reason == "noisy"
    assert state.set_by == "alice"
    assert state.set_at is not None and state.set_at >= before - timedelta(seconds=1)
    [rule] = await rule_store.load_compiled()
    assert rule.state == state


async def test_set_state_announces_once(rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    changes = rule_store.subscribe_changes()
    clipped = RuleState(StateName.CLIPPED, confidence_max=0.4)
    await rule_store.set_state("R0001", clipped, "bob")
    change = await next_change(changes)
    assert change.change_kind == STATE
    assert change.rule_id == "R0001"
    assert isinstance(change.new_value, RuleState)
    assert change.new_value.state is StateName.CLIPPED
    assert change.new_value.confidence_max == 0.4
    assert change.new_value.set_by == "bob"
    await no_change(changes)


async def test_state_of_unseeded_rule_is_kept(rule_store: RuleStore) -> None:
    await rule_store.set_state("R0042", RuleState(StateName.DISABLED), "alice")
    assert (await rule_store.get_state("R0042")).state is StateName.DISABLED
    await seed_rule(rule_store, "R0042", rule_yaml("R0042"))
    [rule] = await rule_store.load_compiled()
    assert rule.state.state is StateName.DISABLED


async def test_subscription_registers_at_call_time(rule_store: RuleStore) -> None:
    changes = rule_store.subscribe_changes()
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    change = await next_change(changes)
    assert (change.change_kind, change.rule_id) == (STATE, "R0001")


async def test_definition_and_deletion_are_announced(rule_store: RuleStore) -> None:
    changes = rule_store.subscribe_changes()
    await seed_rule(rule_store, "R0001", rule_yaml())
    change = await next_change(changes)
    assert change.change_kind == DEFINITION
    assert isinstance(change.new_value, CompiledRule)
    assert change.new_value.rule_version == 1
    await seed_rule(rule_store, "R0001", rule_yaml(version=2))
    change = await next_change(changes)
    assert change.change_kind == DEFINITION
    assert isinstance(change.new_value, CompiledRule)
    assert change.new_value.rule_version == 2
    await remove_rule(rule_store, "R0001")
    change = await next_change(changes)
    assert change.change_kind == DELETED
    assert change.is_deletion
    assert change.rule_id == "R0001"
    assert change.new_value is None
    await no_change(changes)


async def test_definition_change_carries_current_state(rule_store: RuleStore) -> None:
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    changes = rule_store.subscribe_changes()
    await seed_rule(rule_store, "R0001", rule_yaml())
    change = await next_change(changes)
    assert isinstance(change.new_value, CompiledRule)
    assert change.new_value.state.state is StateName.DISABLED


async def test_a_deploy_of_many_rules_is_many_changes(rule_store: RuleStore) -> None:
    changes = rule_store.subscribe_changes()
    ids = [f"R{n:04d}" for n in range(1, 51)]
    for rule_id in ids:
        await seed_rule(rule_store, rule_id, rule_yaml(rule_id))
    seen = [await next_change(changes) for _ in ids]
    assert [c.rule_id for c in seen] == ids
    assert {c.change_kind for c in seen} == {DEFINITION}
    assert len(await rule_store.load_compiled()) == 50


async def test_clear_state_reverts_and_announces(rule_store: RuleStore) -> None:
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    changes = rule_store.subscribe_changes()
    await rule_store.clear_state("R0001", "alice")
    change = await next_change(changes)
    assert change.change_kind == STATE
    assert isinstance(change.new_value, RuleState) and change.new_value.is_default
    assert await rule_store.get_state("R0001") == RuleState()


async def test_expired_state_reads_as_default_and_is_announced(rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    past = datetime.now(UTC) - timedelta(seconds=1)
    changes = rule_store.subscribe_changes()
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED, expires_at=past), "a")
    assert (await next_change(changes)).new_value is not None
    assert await rule_store.get_state("R0001") == RuleState()
    revert = await next_change(changes)
    assert revert.change_kind == STATE and revert.new_value == RuleState()
    [rule] = await rule_store.load_compiled()
    assert rule.state == RuleState()


async def test_expiry_is_a_timer(rule_store: RuleStore) -> None:
    """Nobody calls get_state: the revert still happens and is announced."""
    await seed_rule(rule_store, "R0001", rule_yaml())
    changes = rule_store.subscribe_changes()
    ttl = RuleState(StateName.DISABLED, expires_at=in_seconds(0.4))
    await rule_store.set_state("R0001", ttl, "alice")
    announced = (await next_change(changes)).new_value
    assert isinstance(announced, RuleState) and announced.state is StateName.DISABLED
    revert = await next_change(changes, timeout=5)
    assert revert.change_kind == STATE
    assert revert.rule_id == "R0001"
    assert revert.new_value == RuleState()
    [rule] = await rule_store.load_compiled()
    assert rule.state == RuleState()


async def test_replaced_ttl_does_not_expire_the_new_state(rule_store: RuleStore) -> None:
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED,
                                                  expires_at=in_seconds(0.3)), "alice")
    await rule_store.set_state("R0001", RuleState(StateName.CLIPPED, confidence_max=0.2), "bob")
    changes = rule_store.subscribe_changes()
    await no_change(changes, within=0.8)
    state = await rule_store.get_state("R0001")
    assert state.state is StateName.CLIPPED and state.set_by == "bob"


async def test_closing_the_iterator_unsubscribes(rule_store: RuleStore) -> None:
    changes = rule_store.subscribe_changes()
    await changes.aclose()  # type: ignore[attr-defined]
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(changes), 1)


async def test_abandoned_subscriber_is_dropped(rule_store: RuleStore) -> None:
    assert isinstance(rule_store, BaseRuleStore)
    fanout = rule_store.announcer.fanout
    baseline = fanout.subscriber_count
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")

    async def read_one() -> None:
        changes = rule_store.subscribe_changes()
        await rule_store.clear_state("R0001", "alice")
        async for _ in changes:
            break

    await read_one()
    gc.collect()
    await poll(lambda: fanout.subscriber_count == baseline, message="subscriber dropped")
    for _ in range(20):
        await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    assert fanout.subscriber_count == baseline


async def test_concurrent_state_changes_all_land(rule_store: RuleStore) -> None:
    ids = [f"R{n:04d}" for n in range(1, 21)]
    changes = rule_store.subscribe_changes()
    await asyncio.gather(*(
        rule_store.set_state(rule_id, RuleState(StateName.DISABLED, reason=rule_id), "alice")
        for rule_id in ids
    ))
    seen = {(await next_change(changes)).rule_id for _ in ids}
    assert seen == set(ids)
    for rule_id in ids:
        assert (await rule_store.get_state(rule_id)).reason == rule_id


async def test_list_states_shows_only_live_non_default(rule_store: RuleStore) -> None:
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    await rule_store.set_state("R0002", RuleState(StateName.CLIPPED, confidence_max=0.1), "a")
    await rule_store.set_state("R0003", RuleState(StateName.DISABLED,
                                                  expires_at=in_seconds(-5)), "a")
    await rule_store.clear_state("R0002", "alice")
    states = await rule_store.list_states()
    assert set(states) == {"R0001"}


async def test_rule_ids_that_differ_only_in_case_are_different_rules(
        rule_store: RuleStore) -> None:
    """`R0001` and `r0001` are two rules: their definitions and states never mix."""
    await seed_rule(rule_store, "R0001", rule_yaml("R0001", version=1))
    await seed_rule(rule_store, "r0001", rule_yaml("r0001", version=2))
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED, reason="upper"), "alice")
    assert await rule_store.get_state("r0001") == RuleState()
    await rule_store.set_state("r0001", RuleState(StateName.CLIPPED, confidence_max=0.3), "bob")
    upper = await rule_store.get_state("R0001")
    assert (upper.state, upper.reason) == (StateName.DISABLED, "upper")
    rules = {rule.rule_id: rule for rule in await rule_store.load_compiled()}
    assert set(rules) == {"R0001", "r0001"}
    assert (rules["R0001"].rule_version, rules["r0001"].rule_version) == (1, 2)
    assert rules["R0001"].state.state is StateName.DISABLED
    assert rules["r0001"].state.state is StateName.CLIPPED
    await rule_store.clear_state("r0001", "bob")
    assert (await rule_store.get_state("R0001")).state is StateName.DISABLED
    await remove_rule(rule_store, "r0001")
    [left] = await rule_store.load_compiled()
    assert (left.rule_id, left.rule_version, left.state.state) == \
        ("R0001", 1, StateName.DISABLED)


async def test_clearing_a_state_that_is_not_set_announces_nothing(
        rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    changes = rule_store.subscribe_changes()
    await rule_store.clear_state("R0001", "alice")        # never set
    await rule_store.clear_state("R0404", "alice")        # not even a rule
    await rule_store.set_state("R0001", RuleState(), "alice")  # the default state: a clear
    await no_change(changes)
    assert await rule_store.get_state("R0001") == RuleState()
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED), "alice")
    assert (await next_change(changes)).change_kind == STATE
    await rule_store.clear_state("R0001", "alice")  # a real clear: announced once
    assert (await next_change(changes)).new_value == RuleState()
    await rule_store.clear_state("R0001", "alice")  # cleared already: nothing
    await no_change(changes)
