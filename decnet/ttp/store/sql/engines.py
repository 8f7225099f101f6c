"""The engines of one database and their dialect plumbing.

Every operation of the store is one synchronous function over a `Connection`
(`Engines.run`). On PostgreSQL and MariaDB/MySQL it runs on an async engine
(`AsyncConnection.run_sync`); on SQLite it runs whole on one worker thread with the
standard `sqlite3` driver, so an operation costs one thread hop instead of several per
statement. A SQLite file is checked before each operation (`check_file`): this process
only ever uses the file it first opened.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from decnet.ttp.constants import DB_COMMAND_TIMEOUT, DB_CONNECT_TIMEOUT, SQLITE_BUSY_TIMEOUT_MS
from decnet.ttp.errors import ConfigError, DatabaseMissing, DatabaseReplaced, StoreError
from decnet.ttp.store.sql.schema import upgrade_hint

T = TypeVar("T")

#: Seconds a cancelled caller lets its in-flight database operation finish.
CANCEL_GRACE: Final = 2.0

#: The async driver this project ships for each database (a plain URL gets it).
ASYNC_DRIVERS: Final = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "asyncmy",
                        "mariadb": "asyncmy"}


def memory_url() -> str:
    """A fresh, private in-memory SQLite database shared by the store's connections."""
    return (f"sqlite+aiosqlite:///file:decnet_ttp_{uuid.uuid4().hex}"
            "?mode=memory&cache=shared&uri=true")


def async_url(url: str | URL) -> URL:
    """`url` with the async driver this project ships; `ConfigError` for any other driver.

    `postgresql://`, `mysql://`, `mariadb://` and `sqlite:///` name no driver and get
    asyncpg, asyncmy and aiosqlite; a URL naming another driver (`+psycopg2`,
    `+pymysql`, ...) is refused, as is a URL SQLAlchemy cannot parse.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # ArgumentError and ValueError, depending on the defect
        raise ConfigError(f"invalid database URL: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    wanted = ASYNC_DRIVERS.get(backend)
    if wanted is None:
        raise ConfigError(f"unsupported database {backend!r}: use sqlite, postgresql, "
                          "mysql or mariadb (sqlite+aiosqlite, postgresql+asyncpg, "
                          "mysql+asyncmy)")
    if driver and driver != wanted:
        raise ConfigError(f"unsupported database driver {parsed.drivername!r}: decnet-ttp "
                          f"ships {backend}+{wanted} (or write {backend}://, which uses it)")
    return parsed.set(drivername=f"{backend}+{wanted}")


@dataclass(frozen=True, slots=True)
class _FileId:
    device: int
    inode: int

    def __str__(self) -> str:
        return f"{self.device}:{self.inode}"


class Engines:
    """The engines of the database at `url` (None: a private in-memory SQLite database),
    created lazily, and `run`, which executes one operation on the right one."""

    def __init__(self, url: str | URL | None = None) -> None:
        self.url: URL = async_url(url or memory_url())
        backend = self.url.get_backend_name()
        try:
            self.url.get_dialect()  # a driver SQLAlchemy does not know fails here, not later
        except NoSuchModuleError as exc:
            raise ConfigError(f"unsupported database driver {self.url.drivername!r}: {exc}; "
                              "use sqlite+aiosqlite, postgresql+asyncpg or mysql+asyncmy")\
                from exc
        self.dialect = "mysql" if backend == "mariadb" else backend
        self.is_memory = self.dialect == "sqlite" and _sqlite_is_memory(self.url)
        #: The SQLite file of a file database (None otherwise).
        self.sqlite_path = None if self.dialect != "sqlite" or self.is_memory \
            else _sqlite_path(self.url)
        self._file_id: _FileId | None = None
        self._engine: AsyncEngine | None = None
        self._poll_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        #: SQL statements issued through these engines (for /metrics).
        self.statements = 0

    def __repr__(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (on SQLite: for migrations and ad-hoc access only)."""
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    def _make_engine(self, *, autocommit: bool = False, pre_ping: bool = True) -> AsyncEngine:
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            if self.is_memory:
                kwargs["poolclass"] = StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
        elif self.dialect == "postgresql":
            kwargs["connect_args"] = {"timeout": DB_CONNECT_TIMEOUT,
                                      "command_timeout": DB_COMMAND_TIMEOUT}
        else:
            kwargs["connect_args"] = {"connect_timeout": int(DB_CONNECT_TIMEOUT)}
            kwargs["pool_recycle"] = 3600
        if pre_ping and self.dialect != "sqlite":
            # A pooled connection cut while idle (database restarted, network or proxy
            # reset) is found on checkout and replaced before any statement is sent: a
            # write is never retried (its commit could be unknown), so it must not be
            # the one that discovers the dead connection. (Reads skip the ping: one that
            # meets a dead connection is retried once, see `RuleRepository._read`.)
            kwargs["pool_pre_ping"] = True
        if autocommit:
            kwargs["isolation_level"] = "AUTOCOMMIT"
        engine = create_async_engine(self.url, **kwargs)
        self._instrument(engine.sync_engine)
        return engine

    def _instrument(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._count)
        if self.dialect == "sqlite":
            file_db = not self.is_memory
            event.listen(engine, "connect",
                         lambda dbapi, _record: _sqlite_connect(dbapi, file_db))
            event.listen(engine, "begin", _sqlite_begin)

    def _count(self, *_args: Any) -> None:
        self.statements += 1

    @property
    def _poll(self) -> AsyncEngine:
        """Engine of cheap single-statement reads: autocommit saves BEGIN/ROLLBACK trips.

        Its connections are not pinged on checkout (a read that meets a dead one is
        retried once); the tail's reads, one per poll or notification, save a round trip.
        """
        if self._poll_engine is None:
            self._poll_engine = self._make_engine(autocommit=True, pre_ping=False)
        return self._poll_engine

    def _sqlite_engine(self) -> Engine:
        if self._sync_engine is None:
            kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
            if self.is_memory:
                kwargs["poolclass"] = StaticPool
            else:
                kwargs["pool_size"] = 1
            engine = create_engine(self.url.set(drivername="sqlite+pysqlite"), **kwargs)
            self._instrument(engine)
            self._sync_engine = engine
        return self._sync_engine

    async def dispose(self) -> None:
        for engine in (self._poll_engine, self._engine):
            if engine is not None:
                await engine.dispose()
        thread, self._thread = self._thread, None
        sync_engine, self._sync_engine = self._sync_engine, None
        if thread is not None:
            if sync_engine is not None:
                await asyncio.get_running_loop().run_in_executor(thread, sync_engine.dispose)
            thread.shutdown(wait=False)
        self._poll_engine = self._engine = None

    async def run(self, operation: Callable[[Connection], T], *, poll: bool = False) -> T:
        """Run `operation(connection)`; it begins and ends its own transaction.

        `poll`: a read on the autocommit engine. A cancelled caller lets the operation
        finish (see `settle`).
        """
        if self.dialect == "sqlite":
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="decnet-ttp-sqlite")
            engine = self._sqlite_engine()

            def in_thread() -> T:
                with engine.connect() as conn:
                    return operation(conn)

            return await settle(_await_future(
                asyncio.get_running_loop().run_in_executor(self._thread, in_thread)))

        async def on_engine() -> T:
            target = self._poll if poll else self.engine
            async with target.connect() as conn:
                return await conn.run_sync(operation)

        return await settle(on_engine())

    # the SQLite file ----------------------------------------------------------------

    def check_file(self, *, may_be_missing: bool = False) -> None:
        """Before an operation on a SQLite file: the file under its name is the one first
        opened (one `stat`).

        Missing raises `DatabaseMissing` (unless `may_be_missing`: `db upgrade` creates
        it), and never creates it. Another file raises `DatabaseReplaced`: it is refused
        rather than followed, because SQLite would read the new file through the old
        one's write-ahead log (`-wal`, left behind by a file renamed while open) and a
        later checkpoint would write old pages into it.
        """
        if self.sqlite_path is None:
            return
        try:
            info = os.stat(self.sqlite_path)
        except FileNotFoundError:
            if may_be_missing:
                return
            raise DatabaseMissing(
                f"there is no rule database at {self.sqlite_path} (deleted or moved "
                f"away?). Restore it, or create one: {upgrade_hint(self.url)}") from None
        except OSError as exc:
            raise StoreError(f"cannot open the rule database {self!r}: {exc}") from exc
        current = _FileId(info.st_dev, info.st_ino)
        if self._file_id is None:
            self._file_id = current
        elif current != self._file_id:
            raise DatabaseReplaced(
                f"the rule database file {self.sqlite_path} was replaced since this "
                f"process opened it (inode {current}, was {self._file_id}); it uses "
                "neither any more: restart it (restore a SQLite file with every process "
                "that uses it stopped, and remove the old -wal and -shm files with it)")

    @property
    def file_identity(self) -> str:
        """`device:inode` of the SQLite file these engines use; "" otherwise."""
        return "" if self._file_id is None else str(self._file_id)

    def asyncpg_dsn(self) -> str:
        """This URL as a plain libpq DSN for a dedicated asyncpg connection."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _await_future(future: asyncio.Future[T]) -> T:
    return await future


async def settle(operation: Coroutine[Any, Any, T]) -> T:
    """Run a database operation so that cancelling the caller does not abandon it mid-query.

    A cancelled caller waits up to `CANCEL_GRACE` seconds for the operation to finish
    (and return its connection to the pool), then the cancellation proceeds.
    """
    task = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait({task}, timeout=CANCEL_GRACE)
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: never "exception was never retrieved"
        raise


def _sqlite_is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"


def _sqlite_path(url: URL) -> str:
    """The file a SQLite URL names (`sqlite:///rules.db`, `sqlite:///file:rules.db?uri=true`)."""
    database = url.database or ""
    if url.query.get("uri") and database.startswith("file:"):
        database = database[len("file:"):]
    return os.path.abspath(database)


def _sqlite_connect(dbapi_connection: Any, file_db: bool) -> None:
    # We emit BEGIN ourselves (see `_sqlite_begin`): the driver's implicit transactions
    # start too late for a consistent read and too weak for a writer.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        if file_db:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("decnet_sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())
