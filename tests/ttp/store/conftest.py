"""Fixtures of the store tests: `rule_store` runs once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from decnet.ttp.store.base import RuleStore
from tests.ttp.store.backends import BACKENDS, Backend


@pytest.fixture(params=[pytest.param(b, id=b.name, marks=b.marks) for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def rule_store(backend: Backend) -> AsyncIterator[RuleStore]:
    async with backend.open_store() as store:
        yield store


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
