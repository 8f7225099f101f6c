"""The stored form on real databases: written with each definition, used by a fresh
worker, and never trusted beyond the row's own YAML."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.stored_form import compiler_id
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from decnet.ttp.store.sql.models import RuleRow
from tests.ttp.store.helpers import open_store, rule_yaml, seed


async def row_of(store: DatabaseRuleStore, rule_id: str = "R0001") -> Any:
    async with store.repo.engine.connect() as conn:
        return (await conn.execute(select(RuleRow.__table__).where(
            RuleRow.rule_id == rule_id))).one()


async def set_row(store: DatabaseRuleStore, **values: object) -> None:
    async with store.repo.engine.begin() as conn:
        await conn.execute(update(RuleRow).where(RuleRow.rule_id == "R0001").values(**values))


async def fresh_load(url: str) -> list[CompiledRule]:
    async with open_store(url) as worker:
        return list(await worker.load_compiled())


async def test_an_upsert_writes_the_form_and_a_fresh_store_loads_from_it(db_url: str) -> None:
    async with open_store(db_url) as store:
        await seed(store)
        row = await row_of(store)
        assert row.compiled_by == compiler_id()
        body = orjson.loads(row.compiled_form)
        assert body["yaml_sha256"] == hashlib.sha256(rule_yaml().encode()).hexdigest()
        # a consistent change of the form alone shows that the worker reads it
        body["doc"]["name"] = "from_the_form"
        await set_row(store, compiled_form=orjson.dumps(body).decode())
    [rule] = await fresh_load(db_url)
    assert rule.name == "from_the_form"
    assert rule.source_yaml == ""


async def test_a_row_without_a_form_still_loads_from_its_yaml(db_url: str) -> None:
    async with open_store(db_url) as store:
        await seed(store)
        await set_row(store, compiled_form=None, compiled_by=None)
        [expected] = await store.load_compiled()
    [rule] = await fresh_load(db_url)
    assert rule == expected and rule.name == "uname_all"


@pytest.mark.parametrize("form, by", [
    ("{not json", None), ('{"form": 1}', None), (None, None), ("{}", "another-compiler")])
async def test_an_unusable_form_falls_back_to_the_yaml(
        db_url: str, form: str | None, by: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    async with open_store(db_url) as store:
        await seed(store)
        values: dict[str, object] = {"compiled_by": by or compiler_id()}
        if form is not None:
            values["compiled_form"] = form
        await set_row(store, **values)
    with caplog.at_level(logging.WARNING):
        [rule] = await fresh_load(db_url)
    assert rule.name == "uname_all"
    if by is None and form is not None:
        assert "stored form is not usable" in caplog.text


async def test_a_form_of_other_yaml_is_not_used(db_url: str) -> None:
    """The YAML changed by hand (the form kept): the row's YAML decides."""
    async with open_store(db_url) as store:
        await seed(store)
        await set_row(store, yaml_content=rule_yaml().replace("uname_all", "edited_by_hand"))
    [rule] = await fresh_load(db_url)
    assert rule.name == "edited_by_hand"


async def test_with_source_reads_the_text_from_the_row(db_url: str) -> None:
    async with open_store(db_url) as store:
        await seed(store)
        [rule] = await store.load_compiled()
        assert rule.source_yaml == ""
        assert (await store.with_source(rule)).source_yaml == rule_yaml()
        await set_row(store, yaml_content=rule_yaml().replace("uname_all", "changed"))
        assert (await store.with_source(rule)).source_yaml == ""  # not this rule's text


async def test_reconcile_refreshes_a_stale_form_without_a_new_revision(
        db_url: str, tmp_path: Path) -> None:
    (tmp_path / "R0001.yaml").write_text(rule_yaml(), encoding="utf-8")
    async with open_store(db_url) as store:
        assert await store.reconcile(FilesystemRuleStore(tmp_path)) == (1, 0)
        await set_row(store, compiled_form=None, compiled_by="an-older-compiler")
        head = await store.repo.head_revision()
        assert await store.reconcile(FilesystemRuleStore(tmp_path)) == (0, 0)
        row = await row_of(store)
        assert row.compiled_by == compiler_id() and row.compiled_form is not None
        assert await store.repo.head_revision() == head
        assert await store.reconcile(FilesystemRuleStore(tmp_path)) == (0, 0)


async def test_a_refused_form_is_logged_once_per_revision(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with open_store(db_url) as store:
        await seed(store)
        await set_row(store, compiled_form="{not json",
                      yaml_content="rule_id: R0001\nemit: []\n")  # neither compiles
    async with open_store(db_url) as worker:
        with caplog.at_level(logging.WARNING):
            assert await worker.load_compiled() == []
            assert await worker.load_compiled() == []
        assert caplog.text.count("stored form is not usable") == 1
        assert "R0001" in worker.problems
