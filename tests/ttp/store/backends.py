"""Backends the conformance suite runs on: a name and a way to open a started store.

Each opener is an async context manager that yields a started `RuleStore` on
fresh, isolated storage and cleans it up afterwards.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from decnet.ttp.store.base import RuleStore
from decnet.ttp.store.impl.database import DatabaseRuleStore
from decnet.ttp.store.impl.filesystem import FilesystemRuleStore
from tests.ttp.store.databases import fresh_mariadb, fresh_postgres, fresh_sqlite_file

StoreOpener = Callable[[], contextlib.AbstractAsyncContextManager[RuleStore]]


@dataclass(frozen=True)
class Backend:
    name: str
    open_store: StoreOpener
    marks: tuple[Any, ...] = field(default=())


@contextlib.asynccontextmanager
async def filesystem_store() -> AsyncIterator[RuleStore]:
    with tempfile.TemporaryDirectory(prefix="decnet-ttp-") as directory:
        store = FilesystemRuleStore(directory)
        await store.start()
        try:
            yield store
        finally:
            await store.stop()


@contextlib.asynccontextmanager
async def _database_store(url: str | None) -> AsyncIterator[RuleStore]:
    store = DatabaseRuleStore(url)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


@contextlib.asynccontextmanager
async def sqlite_memory_store() -> AsyncIterator[RuleStore]:
    async with _database_store(None) as store:
        yield store


@contextlib.asynccontextmanager
async def sqlite_file_store() -> AsyncIterator[RuleStore]:
    async with fresh_sqlite_file() as url, _database_store(url) as store:
        yield store


@contextlib.asynccontextmanager
async def postgresql_store() -> AsyncIterator[RuleStore]:
    async with fresh_postgres() as url, _database_store(url) as store:
        yield store


@contextlib.asynccontextmanager
async def mariadb_store() -> AsyncIterator[RuleStore]:
    async with fresh_mariadb() as url, _database_store(url) as store:
        yield store


BACKENDS: list[Backend] = [
    Backend("filesystem", filesystem_store),
    Backend("sqlite-memory", sqlite_memory_store),
    Backend("sqlite-file", sqlite_file_store),
    Backend("postgresql", postgresql_store, (pytest.mark.postgres,)),
    Backend("mariadb", mariadb_store, (pytest.mark.mariadb,)),
]
