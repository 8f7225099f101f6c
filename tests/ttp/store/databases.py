"""Fresh, isolated databases for the database-store tests (one per test, dropped after).

PostgreSQL and MariaDB come from `DECNET_TTP_TEST_POSTGRES_URL` and
`DECNET_TTP_TEST_MARIADB_URL`; an unreachable service skips the test (fails under
`CI=true`, see `tests.services`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from decnet.ttp.store.sql.migrate import upgrade
from tests.services import require_service

POSTGRES_ENV: Final = "DECNET_TTP_TEST_POSTGRES_URL"
MARIADB_ENV: Final = "DECNET_TTP_TEST_MARIADB_URL"
POSTGRES_DEFAULT: Final = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MARIADB_DEFAULT: Final = "mysql+asyncmy://root@127.0.0.1:3306/test"


def postgres_url() -> URL:
    return make_url(os.environ.get(POSTGRES_ENV) or POSTGRES_DEFAULT)


def mariadb_url() -> URL:
    return make_url(os.environ.get(MARIADB_ENV) or MARIADB_DEFAULT)


def require(name: str, url: URL) -> None:
    require_service(name, url.host or "127.0.0.1", url.port or
                    (5432 if url.get_backend_name() == "postgresql" else 3306))


def render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_sqlite_file(*, migrate: bool = True) -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="decnet-ttp-db-") as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'rules.db'}"
        if migrate:
            await upgrade(url)
        yield url


async def _admin(base: URL, statement: str) -> None:
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await admin.dispose()


async def create_server_database(base: URL) -> str:
    """Create an empty database next to `base`'s; its URL."""
    name = f"decnet_ttp_{uuid.uuid4().hex[:12]}"
    await _admin(base, f"CREATE DATABASE {name}")
    return render(base.set(database=name))


async def drop_server_database(url: str) -> None:
    parsed = make_url(url)
    postgres = parsed.get_backend_name() == "postgresql"
    base = parsed.set(database=(postgres_url() if postgres else mariadb_url()).database)
    await _admin(base, f"DROP DATABASE IF EXISTS {parsed.database}" +
                 (" WITH (FORCE)" if postgres else ""))


@contextlib.asynccontextmanager
async def _fresh_server_database(base: URL, *, migrate: bool) -> AsyncIterator[str]:
    url = await create_server_database(base)
    try:
        if migrate:
            await upgrade(url)
        yield url
    finally:
        await drop_server_database(url)


@contextlib.asynccontextmanager
async def fresh_postgres(*, migrate: bool = True) -> AsyncIterator[str]:
    base = postgres_url()
    require("PostgreSQL", base)
    async with _fresh_server_database(base, migrate=migrate) as url:
        yield url


@contextlib.asynccontextmanager
async def fresh_mariadb(*, migrate: bool = True) -> AsyncIterator[str]:
    base = mariadb_url()
    require("MariaDB", base)
    async with _fresh_server_database(base, migrate=migrate) as url:
        yield url


FRESH_DATABASES: Final = {
    "sqlite-file": fresh_sqlite_file,
    "postgresql": fresh_postgres,
    "mariadb": fresh_mariadb,
}
