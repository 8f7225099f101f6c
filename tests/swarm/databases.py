"""A fresh database per swarm test, on SQLite file, PostgreSQL or MariaDB; dropped after.

DSNs come from `DECNET_TTP_TEST_POSTGRES_URL` / `DECNET_TTP_TEST_MARIADB_URL`; the
database they name is only used to create and drop the test's own database. An
unreachable service skips the test, or fails it under `CI=true`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import pytest

from tests.ttp.store.databases import fresh_mariadb, fresh_postgres


@contextlib.asynccontextmanager
async def sqlite_database(tmp_path: Path) -> AsyncIterator[str]:
    yield f"sqlite+aiosqlite:///{tmp_path / 'swarm.db'}"


@contextlib.asynccontextmanager
async def postgres_database(tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_postgres(migrate=False) as url:
        yield url


@contextlib.asynccontextmanager
async def mariadb_database(tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_mariadb(migrate=False) as url:
        yield url


DatabaseOpener = Callable[[Path], contextlib.AbstractAsyncContextManager[str]]

DATABASES: Final[dict[str, DatabaseOpener]] = {
    "sqlite": sqlite_database,
    "postgres": postgres_database,
    "mariadb": mariadb_database,
}

MARKS: Final = {
    "sqlite": (),
    "postgres": (pytest.mark.postgres,),
    "mariadb": (pytest.mark.mariadb,),
}


def database_params(*names: str) -> list[object]:
    return [pytest.param(name, id=name, marks=MARKS[name]) for name in names or DATABASES]
