"""The `RuleStore` contract for scoped states and the state history, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from decnet.ttp.store.base import (
    SCOPED,
    HistoryAction,
    RuleState,
    RuleStore,
    Scope,
    ScopedState,
    StateName,
)
from decnet.vocabulary import InvalidScopeError
from tests.ttp.store.helpers import rule_yaml, seed_rule
from tests.waiting import next_change, no_change

DECKY_3 = Scope.parse("decky=decky-03")
SENSOR_A = Scope.parse("sensor=sensor-a")


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_scoped_state_is_stamped_beside_the_unscoped_one(rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    await rule_store.set_scoped_state("R0001", DECKY_3, RuleState(StateName.DISABLED,
                                                                  reason="noisy"), "alice")
    assert await rule_store.get_state("R0001") == RuleState()
    [scoped] = await rule_store.scoped_states("R0001")
    assert scoped.scope == DECKY_3
    assert scoped.state.state is StateName.DISABLED
    assert scoped.state.set_by == "alice" and scoped.state.set_at is not None
    [rule] = await rule_store.load_compiled()
    assert rule.state == RuleState()
    assert rule.scoped == (scoped,)
    assert rule.state_for("decky-03", None).state is StateName.DISABLED
    assert rule.state_for("decky-04", None) == RuleState()
    assert await rule_store.list_scoped_states() == {"R0001": (scoped,)}
    assert await rule_store.list_states() == {}


async def test_scoped_change_is_announced_with_every_scope_of_the_rule(
        rule_store: RuleStore) -> None:
    changes = rule_store.subscribe_changes()
    await rule_store.set_scoped_state("R0001", DECKY_3, RuleState(StateName.DISABLED), "a")
    first = await next_change(changes)
    assert first.change_kind == SCOPED and first.rule_id == "R0001"
    await rule_store.set_scoped_state(
        "R0001", SENSOR_A, RuleState(StateName.CLIPPED, confidence_max=0.2), "a")
    second = await next_change(changes)
    assert isinstance(second.new_value, tuple)
    assert {item.scope for item in second.new_value} == {DECKY_3, SENSOR_A}
    await rule_store.clear_scoped_state("R0001", DECKY_3, "a")
    third = await next_change(changes)
    assert isinstance(third.new_value, tuple)
    assert [item.scope for item in third.new_value] == [SENSOR_A]
    await rule_store.clear_scoped_state("R0001", DECKY_3, "a")  # not set: no news
    await no_change(changes)


async def test_same_scope_replaces_and_scopes_compare_by_value(rule_store: RuleStore) -> None:
    await rule_store.set_scoped_state("R0001", Scope.parse("decky=b,a"),
                                      RuleState(StateName.DISABLED), "a")
    await rule_store.set_scoped_state("R0001", Scope.parse(["decky=a", "decky=b"]),
                                      RuleState(StateName.CLIPPED, confidence_max=0.5), "b")
    [scoped] = await rule_store.scoped_states("R0001")
    assert scoped.scope.key == "decky=a,b"
    assert scoped.state.state is StateName.CLIPPED


async def test_scoped_expiry_is_a_timer_and_announced(rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    changes = rule_store.subscribe_changes()
    await rule_store.set_scoped_state(
        "R0001", DECKY_3, RuleState(StateName.DISABLED, expires_at=in_seconds(0.4)), "a")
    await rule_store.set_scoped_state("R0001", SENSOR_A, RuleState(StateName.DISABLED), "a")
    await next_change(changes)
    await next_change(changes)
    revert = await next_change(changes, timeout=5)
    assert revert.change_kind == SCOPED
    assert isinstance(revert.new_value, tuple)
    assert [item.scope for item in revert.new_value] == [SENSOR_A]
    assert [s.scope for s in await rule_store.scoped_states("R0001")] == [SENSOR_A]
    [entry] = [e for e in await rule_store.history("R0001")
               if e.action is HistoryAction.EXPIRED]
    assert entry.scope == DECKY_3.key and entry.new is None
    assert entry.old is not None and entry.old.state is StateName.DISABLED


async def test_scoped_states_are_bounded_per_rule(rule_store: RuleStore) -> None:
    from decnet.ttp.constants import MAX_SCOPED_STATES_PER_RULE

    for n in range(MAX_SCOPED_STATES_PER_RULE):
        await rule_store.set_scoped_state("R0001", Scope.parse(f"decky=d{n}"),
                                          RuleState(StateName.DISABLED), "a")
    with pytest.raises(InvalidScopeError):
        await rule_store.set_scoped_state("R0001", Scope.parse("decky=one-more"),
                                          RuleState(StateName.DISABLED), "a")


async def test_history_records_every_change_with_old_and_new(rule_store: RuleStore) -> None:
    disabled = RuleState(StateName.DISABLED, reason="noisy on decky-3")
    await rule_store.set_state("R0001", disabled, "alice")
    await rule_store.set_state("R0001", RuleState(StateName.CLIPPED, confidence_max=0.3,
                                                  reason="tune"), "bob")
    await rule_store.clear_state("R0001", "carol")
    await rule_store.set_scoped_state("R0002", DECKY_3, disabled, "dave")
    await rule_store.clear_state("R0003", "erin")  # nothing set: nothing recorded
    entries = await rule_store.history()
    assert [(e.rule_id, e.action, e.scope, e.by) for e in entries] == [
        ("R0001", HistoryAction.SET, None, "alice"),
        ("R0001", HistoryAction.SET, None, "bob"),
        ("R0001", HistoryAction.CLEAR, None, "carol"),
        ("R0002", HistoryAction.SET, DECKY_3.key, "dave"),
    ]
    first, second, third, _ = entries
    assert first.old is None and first.new is not None and first.new.reason == "noisy on decky-3"
    assert first.reason == "noisy on decky-3" and first.via
    assert second.old is not None and second.old.state is StateName.DISABLED
    assert second.new is not None and second.new.confidence_max == 0.3
    assert third.old is not None and third.old.state is StateName.CLIPPED and third.new is None
    assert [e.rule_id for e in await rule_store.history("R0002")] == ["R0002"]
    later = await rule_store.history(since=datetime.now(UTC) + timedelta(minutes=1))
    assert later == []
    assert [e.by for e in await rule_store.history(limit=2)] == ["carol", "dave"]


async def test_unscoped_expiry_is_recorded(rule_store: RuleStore) -> None:
    await seed_rule(rule_store, "R0001", rule_yaml())
    changes = rule_store.subscribe_changes()
    await rule_store.set_state("R0001", RuleState(StateName.DISABLED,
                                                  expires_at=in_seconds(0.3)), "alice")
    await next_change(changes)
    await next_change(changes, timeout=5)
    actions = [e.action for e in await rule_store.history("R0001")]
    assert actions == [HistoryAction.SET, HistoryAction.EXPIRED]


def test_scope_parsing_and_refusals() -> None:
    scope = Scope.parse(["decky=decky-03,decky-07", "sensor=s1"])
    assert scope.key == "decky=decky-03,decky-07;sensor=s1"
    assert scope.specificity == 3
    assert scope.matches("decky-07", "s1") and not scope.matches("decky-07", "s2")
    for bad in ["", "host=x", "decky=", "decky=a,,b", "decky=a b", "decky=a*"]:
        with pytest.raises(InvalidScopeError):
            Scope.parse(bad)


def test_most_specific_then_most_restrictive_state_wins() -> None:
    from decnet.vocabulary import resolve_state

    unscoped = RuleState(StateName.CLIPPED, confidence_max=0.9)
    decky = ScopedState(DECKY_3, RuleState())
    sensor = ScopedState(SENSOR_A, RuleState(StateName.DISABLED))
    both = ScopedState(Scope.parse(["decky=decky-03", "sensor=sensor-a"]),
                       RuleState(StateName.CLIPPED, confidence_max=0.1))
    scoped = (decky, sensor, both)
    assert resolve_state(unscoped, scoped, "decky-03", "sensor-a") == both.state
    assert resolve_state(unscoped, scoped, "decky-03", "sensor-b") == decky.state
    assert resolve_state(unscoped, scoped, "decky-09", "sensor-a") == sensor.state
    assert resolve_state(unscoped, scoped, None, None) == unscoped
    other = ScopedState(Scope.parse("decky=decky-03,decky-04"),
                        RuleState(StateName.DISABLED))
    assert resolve_state(unscoped, (decky, other), "decky-03", None) == other.state
