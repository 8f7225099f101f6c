"""Fixtures of the store tests: `rule_store` runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.store.base import RuleStore
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from tests.ttp.store.backends import BACKENDS, Backend
from tests.waiting import poll


@pytest.fixture(params=[pytest.param(b, id=b.name, marks=b.marks) for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def rule_store(backend: Backend) -> AsyncIterator[RuleStore]:
    async with backend.open_store() as store:
        yield store


async def seed_rule(store: RuleStore, rule_id: str, yaml_text: str) -> None:
    """Make `rule_id` exist in `store` the way its backend receives definitions."""
    if isinstance(store, FilesystemRuleStore):
        path = Path(store.directory) / f"{rule_id}.yaml"
        tmp = path.with_name(f".{rule_id}.yaml.tmp")
        tmp.write_text(yaml_text, encoding="utf-8")
        tmp.rename(path)
    else:
        rule = compile_rule(yaml_text, source=f"{rule_id}.yaml", expected_rule_id=rule_id)
        await store.upsert_rule(  # type: ignore[attr-defined]
            rule, source_path=f"{rule_id}.yaml", updated_by="conformance")

    async def arrived() -> bool:
        return any(r.rule_id == rule_id and r.source_yaml == yaml_text
                   for r in await store.load_compiled())

    await poll(arrived, message=f"{rule_id} to load")


async def remove_rule(store: RuleStore, rule_id: str) -> None:
    """Make `rule_id` disappear from `store` the way its backend loses definitions."""
    if isinstance(store, FilesystemRuleStore):
        (Path(store.directory) / f"{rule_id}.yaml").unlink()
    else:
        await store.delete_rule(rule_id)  # type: ignore[attr-defined]

    async def gone() -> bool:
        return all(r.rule_id != rule_id for r in await store.load_compiled())

    await poll(gone, message=f"{rule_id} to go")


# Database-store tests: one fresh database per test, on each database server ------------

DB_KINDS = [
    pytest.param("sqlite-file", id="sqlite-file"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=DB_KINDS)
async def db_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """URL of a fresh, migrated database (SQLite file, PostgreSQL, MariaDB), dropped after."""
    from tests.ttp.store.databases import FRESH_DATABASES

    async with FRESH_DATABASES[request.param]() as url:
        yield url


@pytest.fixture(params=[DB_KINDS[1], DB_KINDS[2]])
async def server_db_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """URL of a fresh, migrated PostgreSQL or MariaDB database (reachable over TCP)."""
    from tests.ttp.store.databases import FRESH_DATABASES

    async with FRESH_DATABASES[request.param]() as url:
        yield url
