"""`sync_from_filesystem`: the master projects a rules directory onto the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from decnet.ttp.errors import MasterLeaseLost
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.impl.database import DatabaseRuleStore
from tests.ttp.store.helpers import (
    gone,
    has_version,
    open_store,
    rule_yaml,
    rules_dir,
    running,
    seed,
    stored,
    write,
)
from tests.waiting import poll

BROKEN = "rule_id: {rule_id}\nrule_version: 1\nemit: []\n"


async def test_start_reconciles_new_changed_deleted_and_keeps_broken(db_url: str) -> None:
    async with open_store(db_url) as db, rules_dir() as fs:
        directory = Path(fs.directory)
        await seed(db, "R0002", version=1)   # changed on disk since
        await seed(db, "R0003")              # deleted while the master was down
        await seed(db, "R0004")              # its file is now malformed
        write(directory, "R0001", rule_yaml("R0001"))
        write(directory, "R0002", rule_yaml("R0002", version=2))
        write(directory, "R0004", BROKEN.format(rule_id="R0004"))
        await fs.start()
        async with running(db.sync_from_filesystem(fs, updated_by="master-test")):
            await poll(lambda: db.master_role == "active", message="master active")

            async def reconciled() -> bool:
                rows = await stored(db)
                return set(rows) == {"R0001", "R0002", "R0004"} and rows["R0002"].rule_version == 2

            await poll(reconciled, message="reconcile")
            rows = await stored(db)
            assert (rows["R0004"].rule_version, rows["R0004"].yaml_content) == (
                1, rule_yaml("R0004"))  # last good row kept
            snapshot = await db.repo.snapshot()
            by_id = {r.rule_id: r for r in snapshot.rules}
            assert by_id["R0001"].updated_by == "master-test"
            assert by_id["R0001"].source_path == "R0001.yaml"  # a name, not a host path
        head = await db.repo.head_revision()
        written, deleted = await db.reconcile(fs)  # unchanged files: no write
        assert (written, deleted) == (0, 0)
        assert await db.repo.head_revision() == head


async def test_edits_are_projected_and_a_malformed_edit_keeps_the_row(db_url: str) -> None:
    async with open_store(db_url) as db, rules_dir() as fs:
        directory = Path(fs.directory)
        write(directory, "R0001", rule_yaml("R0001"))
        await fs.start()
        async with running(db.sync_from_filesystem(fs)):
            await poll(lambda: has_version(db, "R0001", 1), message="R0001 stored")
            write(directory, "R0002", rule_yaml("R0002"))
            await poll(lambda: has_version(db, "R0002", 1), message="R0002 added")
            write(directory, "R0001", rule_yaml("R0001", version=3))
            await poll(lambda: has_version(db, "R0001", 3), message="R0001 edited")
            write(directory, "R0001", BROKEN.format(rule_id="R0001"))
            await poll(lambda: "R0001.yaml" in fs.problems, message="malformed edit seen")
            (directory / "R0002.yaml").unlink()
            await poll(lambda: gone(db, "R0002"), message="R0002 deleted")
            assert await has_version(db, "R0001", 3)


async def test_a_second_master_stands_by_and_takes_over(db_url: str) -> None:
    async with open_store(db_url) as first, open_store(db_url) as second, \
            rules_dir() as fs:
        directory = Path(fs.directory)
        write(directory, "R0001", rule_yaml("R0001"))
        await fs.start()
        roles: list[str] = []
        reconciles: list[tuple[int, int]] = []
        async with running(first.sync_from_filesystem(fs, updated_by="first",
                                                      lease_ttl=0.4)) as first_task:
            await poll(lambda: first.master_role == "active", message="first active")
            async with running(second.sync_from_filesystem(
                    fs, updated_by="second", lease_ttl=0.4, on_role=roles.append,
                    on_reconciled=lambda w, d: reconciles.append((w, d)))):
                await poll(lambda: second.master_role == "standby", message="second standby")
                lease = await second.repo.read_lease()
                assert lease.holder is not None and lease.holder.count(":") == 2
                await asyncio.sleep(0)  # the standby keeps standing by while beats arrive
                await poll(lambda: _heartbeats_moved(second, lease.heartbeat),
                           message="heartbeats")
                assert second.master_role == "standby"
                first_task.cancel()  # the first master stops: it releases the lease
                await poll(lambda: second.master_role == "active", message="takeover")
                write(directory, "R0002", rule_yaml("R0002"))
                await poll(lambda: has_version(second, "R0002", 1), message="second projects")
                snapshot = await second.repo.snapshot()
                assert {r.rule_id: r.updated_by for r in snapshot.rules}["R0002"] == "second"
                assert roles == ["standby", "active"]
                assert reconciles == [(0, 0)]  # the takeover's reconcile: nothing to do


async def _heartbeats_moved(store: DatabaseRuleStore, since: int) -> bool:
    return (await store.repo.read_lease()).heartbeat > since + 1


async def test_a_silent_holder_is_replaced_and_its_writes_are_fenced(db_url: str) -> None:
    async with open_store(db_url) as db, rules_dir() as fs:
        write(Path(fs.directory), "R0001", rule_yaml("R0001"))
        await fs.start()
        seen = await db.repo.read_lease()
        stale = await db.repo.acquire_lease("elsewhere:4242:dead", seen)
        assert stale is not None
        async with running(db.sync_from_filesystem(fs, lease_ttl=0.5)):
            await poll(lambda: db.master_role == "standby", message="standby")
            await poll(lambda: db.master_role == "active", message="takeover", timeout=5)
            await poll(lambda: has_version(db, "R0001", 1), message="reconciled")
        rule = compile_rule(rule_yaml("R0001", version=9), source="R0001.yaml")
        with pytest.raises(MasterLeaseLost):
            await db.write_definition(rule, source_path="R0001.yaml", updated_by="old", fence=stale)
        assert await has_version(db, "R0001", 1)
