"""The console's rules view, kept per database revision: reused while the head stays,
loaded again after a change from this process or another one, and when a state's end
passes; bounded test reports; the master's garbage-collector freeze."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from decnet.swarm.console.mount import create_master_app
from decnet.swarm.console.rules_view import HeapFreezer, RulesCache, RulesView, build_view
from decnet.ttp.constants import CONSOLE_ADVANCE_NEW_MAX, CONSOLE_TEST_REPORTS
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.database import DatabaseRuleStore
from decnet.ttp.store.sql.rows import Head
from decnet.ttp.store.sql.tokens import TokenTable
from decnet.vocabulary import RuleState, Scope, StateName
from tests.swarm.console.test_app import csrf_of
from tests.ttp.store.databases import fresh_sqlite_file
from tests.ttp.store.helpers import open_store, rule_yaml, seed

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def sqlite_file() -> AsyncIterator[str]:
    async with fresh_sqlite_file() as url:
        yield url


async def cli(*args: str) -> None:
    """`decnet-ttp ARGS` in a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "decnet.cli.app", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (out, err)


async def test_the_view_is_reused_until_the_head_moves() -> None:
    async with open_store() as store:
        await seed(store, "R0001")
        cache = RulesCache(store)
        first = await cache.current()
        assert await cache.current() is first and cache.loads == 1
        await store.set_state("R0001", RuleState(StateName.DISABLED, reason="noisy"), "me")
        second = await cache.current()
        assert second is not first and (cache.loads, cache.advances) == (1, 1)
        assert second.by_id["R0001"].state.state is StateName.DISABLED
        assert second.head.revision > first.head.revision


def facts(view: RulesView) -> tuple[object, ...]:
    return ([(r.rule_id, r.rule_version, r.source_yaml, r.source_path, r.state, r.scoped)
             for r in view.rules],
            sorted(view.by_id), view.kinds, view.ends)


async def test_changes_bring_the_view_forward_as_a_whole_load_would() -> None:
    clock = Clock()
    store = DatabaseRuleStore(clock=clock)
    await store.start()
    try:
        for n in range(1, 6):
            await seed(store, f"R000{n}")
        cache = RulesCache(store)
        await cache.current()
        soon = T0 + timedelta(minutes=5)
        await store.set_state("R0001", RuleState(StateName.DISABLED, expires_at=soon,
                                                 reason="brief"), "me")
        await store.set_scoped_state("R0002", Scope(frozenset({"decky-03"})), RuleState(
            StateName.CLIPPED, confidence_max=0.2, expires_at=soon + timedelta(minutes=1),
            reason="scoped"), "me")
        await store.set_state("R0003", RuleState(StateName.CLIPPED, confidence_max=0.4,
                                                 reason="ceiling"), "me")
        await store.clear_state("R0003", "me")
        await store.set_state("R0004", RuleState(StateName.DISABLED, reason="off"), "me")
        view = await cache.current()
        assert (cache.loads, cache.advances) == (1, 1)
        whole = build_view(view.head, await store.load_compiled(), clock.now)
        assert facts(view) == facts(whole)
        assert [s.rule_id for s in view.ends] == ["R0001", "R0002"]

        clock.now = soon + timedelta(seconds=30)  # R0001's end passed, nobody reverted it
        later = await cache.current()
        assert (cache.loads, cache.advances) == (1, 2)
        assert later.by_id["R0001"].state.is_default and later.head == view.head
        assert facts(later) == facts(build_view(later.head, await store.load_compiled(),
                                                clock.now))

        await seed(store, "R0001", version=2)  # a definition changed
        await store.delete_rule("R0005")
        await store.repo.upsert_rule("R0003", 2, "rule_id: R0003\nbroken: [", source_path=None,
                                     updated_by="test")  # absent, as for a whole load
        edited = await cache.current()
        assert (cache.loads, cache.advances) == (1, 3)
        assert edited.by_id["R0001"].rule_version == 2
        assert "R0005" not in edited.by_id and "R0003" not in edited.by_id
        assert facts(edited) == facts(build_view(edited.head, await store.load_compiled(),
                                                 clock.now))
        await store.set_scoped_state("R0006", Scope(frozenset({"decky-09"})), RuleState(
            StateName.DISABLED, reason="before its definition"), "me")
        await seed(store, "R0006")  # a new rule, compiled here with its scoped state
        added = await cache.current()
        assert (cache.loads, cache.advances) == (1, 4) and "R0006" in added.by_id
        assert facts(added) == facts(build_view(added.head, await store.load_compiled(),
                                                clock.now))
        for n in range(CONSOLE_ADVANCE_NEW_MAX + 1):  # too many new rules: the whole pack
            await seed(store, f"R1{n:03d}")
        assert len((await cache.current()).rules) == len(added.rules) + CONSOLE_ADVANCE_NEW_MAX + 1
        assert cache.loads == 2
    finally:
        await store.stop()


async def test_concurrent_pages_share_one_load() -> None:
    async with open_store() as store:
        await seed(store, "R0001")
        cache = RulesCache(store)
        views = await asyncio.gather(*(cache.current() for _ in range(8)))
        assert all(view is views[0] for view in views) and cache.loads == 1


async def test_a_change_from_another_process_shows_on_the_next_page(sqlite_file: str) -> None:
    async with open_store(sqlite_file) as store:
        await seed(store, "R0001")
        await TokenTable(store.repo).create("alice", "viewer", "dttp_alice-secret", None)
        transport = httpx.ASGITransport(app=create_master_app(store))
        async with httpx.AsyncClient(transport=transport, base_url="http://m") as client:
            csrf = csrf_of((await client.get("/ui/login")).text)
            await client.post("/ui/login", data={"token": "dttp_alice-secret",
                                                 "csrf_token": csrf})
            assert 'data-rule="R0001"' not in (
                await client.get("/ui/rules?state=disabled")).text
            await cli("state", "set", "R0001", "disabled", "--reason", "from the CLI",
                      "--by", "bob", "--db", sqlite_file)
            assert 'data-rule="R0001"' in (await client.get("/ui/rules?state=disabled")).text
            assert "from the CLI" in (await client.get("/ui/rules/R0001")).text
            await cli("state", "clear", "R0001", "--by", "bob", "--db", sqlite_file)
            assert 'data-rule="R0001"' not in (
                await client.get("/ui/rules?state=disabled")).text


async def test_the_view_ends_when_its_earliest_state_ends() -> None:
    clock = Clock()
    store = DatabaseRuleStore(clock=clock)
    await store.start()
    try:
        await seed(store, "R0001")
        await store.set_state("R0001", RuleState(
            StateName.DISABLED, expires_at=T0 + timedelta(minutes=5), reason="brief"), "me")
        cache = RulesCache(store)
        view = await cache.current()
        assert view.valid_until == T0 + timedelta(minutes=5)
        assert [s.rule_id for s in view.expiring(T0, 3600)] == ["R0001"]
        clock.now = T0 + timedelta(minutes=4)
        assert await cache.current() is view
        clock.now = T0 + timedelta(minutes=6)  # no process reverted it: the view still must
        later = await cache.current()
        assert later is not view and later.by_id["R0001"].state.is_default
        assert later.valid_until is None and later.expiring(clock.now, 3600) == []
    finally:
        await store.stop()


def test_test_reports_are_kept_per_view_and_bounded() -> None:
    rule = compile_rule(rule_yaml("R0001"), source="R0001.yaml", expected_rule_id="R0001")
    rules = [replace(rule, rule_id=f"R{n:04d}") for n in range(CONSOLE_TEST_REPORTS + 20)]
    view = build_view(Head(1, "test"), rules, T0)
    assert view.test_report(rules[0]) is None  # no tests: remembered as such
    assert list(view._tests) == [rules[0].rule_id]
    for other in rules[1:]:
        view.test_report(other)
    assert len(view._tests) == CONSOLE_TEST_REPORTS
    assert rules[0].rule_id not in view._tests and rules[-1].rule_id in view._tests


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only a collection frees it


def test_the_freezer_freezes_after_each_build_and_collects_now_and_then() -> None:
    now = [0.0]
    freezer = HeapFreezer(every=60.0, clock=lambda: now[0])
    gc.disable()  # no automatic collection between the steps below
    try:
        node = Node()
        ref = weakref.ref(node)
        freezer.after_build()
        del node
        gc.collect()
        assert ref() is not None and gc.get_freeze_count() > 0  # frozen: not collected
        now[0] = 30.0
        freezer.after_build()
        gc.collect()
        assert ref() is not None
        now[0] = 61.0
        freezer.after_build()  # unfreezes and collects first
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.enable()
