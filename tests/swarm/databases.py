"""A fresh database per swarm test, on SQLite file, PostgreSQL or MariaDB; dropped after.

DSNs come from `DECNET_TTP_TEST_POSTGRES_URL` / `DECNET_TTP_TEST_MARIADB_URL`; the
database they name is only used to create and drop the test's own database. An
unreachable service skips the test, or fails it under `CI=true`.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy.engine import make_url

from tests.services import require_service

POSTGRES_URL: Final = os.environ.get(
    "DECNET_TTP_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
MARIADB_URL: Final = os.environ.get(
    "DECNET_TTP_TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")


def _name() -> str:
    return f"swarm_{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def sqlite_database(tmp_path: Path) -> AsyncIterator[str]:
    yield f"sqlite+aiosqlite:///{tmp_path / 'swarm.db'}"


@contextlib.asynccontextmanager
async def postgres_database(tmp_path: Path) -> AsyncIterator[str]:
    import asyncpg

    url = make_url(POSTGRES_URL)
    require_service("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)
    name = _name()
    admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username,
                                  password=url.password, database=url.database)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def mariadb_database(tmp_path: Path) -> AsyncIterator[str]:
    import asyncmy

    url = make_url(MARIADB_URL)
    require_service("MariaDB", url.host or "127.0.0.1", url.port or 3306)
    name = _name()
    admin = await asyncmy.connect(host=url.host, port=url.port or 3306, user=url.username,
                                  password=url.password or "", autocommit=True)
    try:
        async with admin.cursor() as cursor:
            await cursor.execute(f"CREATE DATABASE `{name}`")
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.cursor() as cursor:
                await cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


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
