"""`RuleRepository`: the async engine and every query of the database store.

Writes follow one pattern (`_transact`): in one transaction, bump the single
`ttp_revision` row (its row lock serializes writers, so revisions are handed out and
become visible in commit order, without gaps), write the row with that revision,
append one `ttp_change_log` entry and, on PostgreSQL, `NOTIFY` (delivered at commit).
A write that would change nothing rolls back and consumes no revision.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from decnet.ttp.constants import (
    CHANGE_LOG_RETENTION,
    DB_COMMAND_TIMEOUT,
    DB_CONNECT_TIMEOUT,
    NOTIFY_CHANNEL,
    SQLITE_BUSY_TIMEOUT_MS,
)
from decnet.ttp.errors import ConfigError, MasterLeaseLost, SchemaOutdatedError, StoreError
from decnet.ttp.store.base import DEFAULT_STATE, RuleState, utcnow
from decnet.ttp.store.sql.models import (
    Base,
    ChangeLogRow,
    MasterLeaseRow,
    RevisionRow,
    RuleRow,
    StateRow,
)
from decnet.ttp.store.sql.types import UTCDateTime

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a cancelled caller lets its in-flight database operation finish.
CANCEL_GRACE: Final = 2.0

DEFINITION_KIND: Final = "definition"
STATE_KIND: Final = "state"
DELETED_KIND: Final = "deleted"

STATE_TABLE: Final = StateRow.__table__

_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, ConnectionError)


def memory_url() -> str:
    """A fresh, private in-memory SQLite database shared by the store's connections."""
    return (f"sqlite+aiosqlite:///file:decnet_ttp_{uuid.uuid4().hex}"
            "?mode=memory&cache=shared&uri=true")


def upgrade_hint(url: URL | str) -> str:
    shown = make_url(url).render_as_string(hide_password=True) if url else "URL"
    return f"decnet-ttp db upgrade --db {shown}"


#: The async driver this project ships for each database (a plain URL gets it).
ASYNC_DRIVERS: Final = {"sqlite": "aiosqlite", "postgresql": "asyncpg", "mysql": "asyncmy",
                        "mariadb": "asyncmy"}


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


@functools.cache
def schema_revisions() -> tuple[str, ...]:
    """Alembic revisions of the shipped migrations, oldest first; the last is the head."""
    script = _script_directory()
    return tuple(reversed([rev.revision for rev in script.walk_revisions()]))


def schema_head() -> str:
    return schema_revisions()[-1]


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed revision and the identity of the database that holds it.

    `identity` is the random `database_id` the migration wrote, and on a SQLite file the
    file's device and inode too: another database (or a file restored by rename) has
    another identity.
    """

    revision: int
    identity: str


class DatabaseFileChanged(StoreError):
    """The SQLite file this process opened is gone or was replaced: it is used no more."""


class DatabaseMissing(DatabaseFileChanged):
    """The SQLite file of the rule database is gone (deleted or moved away)."""


class DatabaseReplaced(DatabaseFileChanged):
    """Another file now has the SQLite database's name (a restore by rename, a new
    `db upgrade` after a delete): the process that opened the old one must restart."""


@dataclass(frozen=True, slots=True)
class StoredRule:
    """One `ttp_rule` row."""

    rule_id: str
    rule_version: int
    source_path: str | None
    yaml_content: str
    updated_at: datetime
    updated_by: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class StoredState:
    """One `ttp_rule_state` row: the state and the revision that wrote it."""

    revision: int
    state: RuleState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every rule and state, and the revision they are at least as new as."""

    revision: int
    rules: list[StoredRule]
    states: dict[str, StoredState]
    #: The database's identity (see `Head`).
    identity: str = "-"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One change-log entry joined with the current rows of its rule."""

    revision: int
    rule_id: str
    change_kind: str
    rule: StoredRule | None
    state: StoredState | None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """The `ttp_master_lease` row."""

    holder: str | None
    token: int
    heartbeat: int
    acquired_at: datetime | None
    heartbeat_at: datetime | None


@dataclass(frozen=True, slots=True)
class Fence:
    """Proof of holding the master lease, checked inside each fenced write."""

    holder: str
    token: int


@dataclass(frozen=True, slots=True)
class RuleWrite:
    """Result of a definition write: its revision and the rule's state at that revision."""

    revision: int
    state: RuleState


class _NoChange(Exception):
    """Raised inside a write transaction to roll it back: nothing would change."""


def _state_of(row: Any) -> RuleState:
    return RuleState(state=row.state, confidence_max=row.confidence_max,
                     expires_at=row.expires_at, reason=row.reason, set_by=row.set_by,
                     set_at=row.set_at)


@dataclass(frozen=True, slots=True)
class _FileId:
    device: int
    inode: int

    def __str__(self) -> str:
        return f"{self.device}:{self.inode}"


class RuleRepository:
    """Owns the engines of one database and runs every query of the store.

    `url` is an SQLAlchemy URL (`sqlite+aiosqlite:///rules.db`,
    `postgresql+asyncpg://…`, `mysql+asyncmy://…`); None means a private in-memory
    SQLite database, whose schema is created on first use. Any other database must
    have been migrated (`decnet-ttp db upgrade`); an older schema is refused with
    `SchemaOutdatedError`. Engines are created lazily, on first use.

    Every operation is one synchronous function over a `Connection`. On PostgreSQL
    and MariaDB/MySQL it runs on the async engine (`AsyncConnection.run_sync`); on
    SQLite it runs whole on one worker thread with the standard `sqlite3` driver, so an
    operation costs one thread hop instead of several per statement.
    """

    def __init__(self, url: str | URL | None = None, *,
                 change_log_retention: int = CHANGE_LOG_RETENTION,
                 check_schema: bool = True) -> None:
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
        self.change_log_retention = max(1, change_log_retention)
        self._prune_every = max(1, min(1000, self.change_log_retention // 10))
        self._check_schema = check_schema
        self._engine: AsyncEngine | None = None
        self._poll_engine: AsyncEngine | None = None
        self._autocommit_write_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        #: SQL statements issued through this repository's engines (for /metrics).
        self.statements = 0

    def __repr__(self) -> str:
        return f"RuleRepository({self.url.render_as_string(hide_password=True)!r})"

    # engines ----------------------------------------------------------------

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
            # meets a dead connection is retried once, see `_read`.)
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

    @property
    def _autocommit_writes(self) -> AsyncEngine:
        """Engine of single-statement writes (PostgreSQL `set_state`): autocommit, pinged."""
        if self._autocommit_write_engine is None:
            self._autocommit_write_engine = self._make_engine(autocommit=True)
        return self._autocommit_write_engine

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
        for engine in (self._poll_engine, self._autocommit_write_engine, self._engine):
            if engine is not None:
                await engine.dispose()
        thread, self._thread = self._thread, None
        sync_engine, self._sync_engine = self._sync_engine, None
        if thread is not None:
            if sync_engine is not None:
                await asyncio.get_running_loop().run_in_executor(thread, sync_engine.dispose)
            thread.shutdown(wait=False)
        self._poll_engine = self._autocommit_write_engine = self._engine = None
        self._ready = False

    async def run(self, operation: Callable[[Connection], T], *, poll: bool = False,
                  autocommit_write: bool = False) -> T:
        """Run `operation(connection)`; it begins and ends its own transaction.

        `poll`: a read on the autocommit engine; `autocommit_write`: a single-statement
        write on an autocommit engine whose connections are pinged on checkout. A
        cancelled caller lets the operation finish (see `settle`).
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
            target = self._autocommit_writes if autocommit_write else \
                self._poll if poll else self.engine
            async with target.connect() as conn:
                return await conn.run_sync(operation)

        return await settle(on_engine())

    async def _read(self, what: str, operation: Callable[[Connection], T], *,
                    poll: bool = False) -> T:
        """A read: database errors become `StoreError` naming what was being read."""
        await self.connect()
        try:
            try:
                return await self.run(operation, poll=poll)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # A pooled connection died while idle (database restarted, network cut):
                # the pool has been invalidated, so one retry runs on a fresh connection.
                return await self.run(operation, poll=poll)
        except StoreError:
            raise
        except _DB_ERRORS as exc:
            raise StoreError(f"reading {what} from the rule database failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    # schema -----------------------------------------------------------------

    async def connect(self) -> None:
        """Check the schema (create it, in memory) on first use. Idempotent.

        A SQLite file is checked on every call (one `stat`): one that is missing raises
        `DatabaseMissing` (it is never created here: only `decnet-ttp db upgrade` does),
        and another file under its name than the one first opened raises
        `DatabaseReplaced`, so no read or write goes to an unlinked file. A replaced
        file is refused rather than followed: SQLite would read the new file through
        the old one's write-ahead log (`-wal`, left behind by a file renamed while
        open) and a later checkpoint would write old pages into it. Restart the process.
        """
        if self.sqlite_path is not None:
            await self._check_file()
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            try:
                if self.is_memory:
                    await self.create_schema()
                elif self._check_schema:
                    await self.check_schema()
            except StoreError:
                raise
            except _DB_ERRORS as exc:
                raise StoreError(f"cannot open the rule database {self!r}: {exc}") from exc
            self._ready = True

    async def _check_file(self) -> None:
        assert self.sqlite_path is not None
        try:
            info = os.stat(self.sqlite_path)
        except FileNotFoundError:
            if not self._check_schema:
                return  # `db upgrade` creates it
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
        """`device:inode` of the SQLite file this repository has open; "" otherwise."""
        return "" if self._file_id is None else str(self._file_id)

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; None when it has no schema."""
        def read(conn: Connection) -> str | None:
            if not inspect(conn).has_table("alembic_version"):
                return None
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            return str(versions[0][0]) if versions else None

        return await self.run(read)

    async def check_schema(self) -> None:
        current = await self.schema_revision()
        head = schema_head()
        if current == head:
            return
        if current is None or current in schema_revisions():
            found = "no schema" if current is None else f"schema revision {current}"
            raise SchemaOutdatedError(
                f"the rule database has {found}; this version needs {head}. "
                f"Run: {upgrade_hint(self.url)}")
        raise SchemaOutdatedError(
            f"the rule database is at schema revision {current}, newer than this version "
            f"of decnet-ttp knows ({head}); upgrade decnet-ttp")

    async def create_schema(self) -> None:
        """Create the tables from the models and stamp them (in-memory databases, tests)."""
        def create(conn: Connection) -> None:
            from alembic.runtime.migration import MigrationContext

            with conn.begin():
                Base.metadata.create_all(conn)
                if conn.execute(select(RevisionRow.id)).first() is None:
                    conn.execute(insert(RevisionRow).values(
                        id=1, revision=0, database_id=uuid.uuid4().hex))
                    conn.execute(insert(MasterLeaseRow).values(
                        id=1, holder=None, token=0, heartbeat=0))
                MigrationContext.configure(conn).stamp(_script_directory(), schema_head())

        await self.run(create)

    # reads ------------------------------------------------------------------

    async def head(self) -> Head:
        """The last committed revision and the database's identity: the one cheap query of
        an idle tail."""
        def read(conn: Connection) -> Head:
            revision, database_id = conn.execute(_HEAD_AND_ID).one()
            return Head(int(revision), self._identity(database_id))

        return await self._read("the revision", read, poll=True)

    async def head_revision(self) -> int:
        """The last committed revision."""
        return (await self.head()).revision

    def _identity(self, database_id: str | None) -> str:
        return f"{database_id or '-'}@{self.file_identity}" if self.file_identity \
            else database_id or "-"

    async def snapshot(self) -> Snapshot:
        """Every rule and state. The revision is read first, so rows are at least that new."""
        def read(conn: Connection) -> Snapshot:
            head, database_id = conn.execute(_HEAD_AND_ID).one()
            rules = [StoredRule(*row) for row in conn.execute(select(
                RuleRow.rule_id, RuleRow.rule_version, RuleRow.source_path,
                RuleRow.yaml_content, RuleRow.updated_at, RuleRow.updated_by,
                RuleRow.revision).order_by(RuleRow.rule_id))]
            states = {row.rule_id: StoredState(row.revision, _state_of(row))
                      for row in conn.execute(select(STATE_TABLE))}
            return Snapshot(int(head), rules, states, self._identity(database_id))

        return await self._read("the rules", read)

    async def read_state(self, rule_id: str) -> StoredState | None:
        def read(conn: Connection) -> StoredState | None:
            row = conn.execute(_STATE_READ, {"b_rule_id": rule_id}).first()
            return None if row is None else StoredState(row.revision, _state_of(row))

        return await self._read("a state", read)

    async def read_states(self) -> dict[str, StoredState]:
        def read(conn: Connection) -> dict[str, StoredState]:
            return {row.rule_id: StoredState(row.revision, _state_of(row))
                    for row in conn.execute(select(STATE_TABLE))}

        return await self._read("the states", read)

    async def rule_contents(self) -> dict[str, tuple[int, str]]:
        """`rule_id -> (rule_version, yaml_content)` of every stored rule."""
        def read(conn: Connection) -> dict[str, tuple[int, str]]:
            rows = conn.execute(select(RuleRow.rule_id, RuleRow.rule_version,
                                       RuleRow.yaml_content))
            return {rule_id: (version, content) for rule_id, version, content in rows}

        return await self._read("the rules", read)

    async def rule_exists(self, rule_id: str) -> bool:
        def read(conn: Connection) -> bool:
            return conn.execute(select(RuleRow.revision).where(
                RuleRow.rule_id == rule_id)).first() is not None

        return await self._read("a rule", read)

    async def changes_since(self, watermark: int, head: int, limit: int) -> list[LogEntry]:
        """Change-log entries in `(watermark, head]`, oldest first, with current rows."""
        params = {"b_after": watermark, "b_upto": head, "b_limit": limit}

        def read(conn: Connection) -> list[LogEntry]:
            entries = []
            for row in conn.execute(_CHANGES_SINCE, params):
                rule = None if row.rule_revision is None else StoredRule(
                    row.rule_id, row.rule_version, row.source_path, row.yaml_content,
                    row.updated_at, row.updated_by, row.rule_revision)
                state = None if row.state_revision is None else StoredState(
                    row.state_revision, _state_of(row))
                entries.append(LogEntry(row.revision, row.rule_id, row.change_kind, rule,
                                        state))
            return entries

        return await self._read("the change log", read, poll=True)

    async def oldest_logged_revision(self) -> int | None:
        def read(conn: Connection) -> int | None:
            value = conn.execute(select(func.min(ChangeLogRow.revision))).scalar()
            return None if value is None else int(value)

        return await self._read("the change log", read)

    # writes -----------------------------------------------------------------

    async def _transact(self, rule_id: str, kind: str, body: Callable[[Connection, int], None],
                        fence: Fence | None = None) -> int | None:
        """Run `body` in a revision-bumping transaction; its revision, or None if no-op."""
        def transaction(conn: Connection) -> int | None:
            if self.dialect == "sqlite":
                conn.execution_options(decnet_sqlite_begin="IMMEDIATE")
            try:
                with conn.begin():
                    if fence is not None:
                        _check_fence(conn, fence)
                    revision = self._bump(conn)
                    body(conn, revision)
                    conn.execute(_LOG_INSERT, {"revision": revision, "rule_id": rule_id,
                                               "change_kind": kind, "changed_at": utcnow()})
                    if revision % self._prune_every == 0:
                        conn.execute(_LOG_PRUNE,
                                     {"b_upto": revision - self.change_log_retention})
                    if self.dialect == "postgresql":
                        conn.execute(_NOTIFY, {"b_payload": str(revision)})
                return revision
            except _NoChange:
                return None

        await self.connect()
        try:
            if self.dialect == "sqlite":  # one writer thread serializes already
                return await self.run(transaction)
            async with self._write_lock:
                return await self.run(transaction)
        except StoreError:
            raise
        except _DB_ERRORS as exc:
            raise StoreError(f"writing {kind} of {rule_id} to the rule database failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    def _bump(self, conn: Connection) -> int:
        if self.dialect != "mysql":
            return int(conn.execute(_BUMP_RETURNING).scalar_one())
        conn.execute(_BUMP)
        return int(conn.execute(_HEAD).scalar_one())

    async def upsert_rule(self, rule_id: str, rule_version: int, yaml_content: str, *,
                          source_path: str | None, updated_by: str | None,
                          fence: Fence | None = None) -> RuleWrite | None:
        """Insert or replace a definition; None when the stored row is identical."""
        state_now: list[RuleState] = []

        def body(conn: Connection, revision: int) -> None:
            key = {"b_rule_id": rule_id}
            current = conn.execute(_RULE_CONTENT, key).first()
            if current is not None and tuple(current) == (rule_version, yaml_content):
                raise _NoChange
            values = {"rule_version": rule_version, "yaml_content": yaml_content,
                      "source_path": source_path, "updated_at": utcnow(),
                      "updated_by": updated_by, "revision": revision}
            if current is None:
                conn.execute(_RULE_INSERT, {"rule_id": rule_id, **values})
            else:
                conn.execute(_RULE_UPDATE, {**key, **values})
            row = conn.execute(_STATE_READ, key).first()
            state_now.append(DEFAULT_STATE if row is None else _state_of(row))

        revision = await self._transact(rule_id, DEFINITION_KIND, body, fence)
        return None if revision is None else RuleWrite(revision, state_now[-1])

    async def delete_rule(self, rule_id: str, *, fence: Fence | None = None) -> int | None:
        """Remove a definition (its state stays); None when there was none."""
        def body(conn: Connection, revision: int) -> None:
            if conn.execute(_RULE_DELETE, {"b_rule_id": rule_id}).rowcount == 0:
                raise _NoChange

        return await self._transact(rule_id, DELETED_KIND, body, fence)

    async def write_state(self, rule_id: str, state: RuleState) -> int | None:
        """Persist a state (the default state deletes the row); None when nothing changed."""
        if self.dialect == "postgresql" and not state.is_default:
            return await self._pg_write_state(rule_id, state)
        def body(conn: Connection, revision: int) -> None:
            if state.is_default:
                if conn.execute(_STATE_DELETE, {"b_rule_id": rule_id}).rowcount == 0:
                    raise _NoChange
                return
            values = {"state": state.state.value, "confidence_max": state.confidence_max,
                      "expires_at": state.expires_at, "reason": state.reason,
                      "set_by": state.set_by, "set_at": state.set_at, "revision": revision}
            if conn.execute(_STATE_UPDATE, {"b_rule_id": rule_id, **values}).rowcount == 0:
                conn.execute(_STATE_INSERT, {"rule_id": rule_id, **values})

        return await self._transact(rule_id, STATE_KIND, body)

    async def _pg_write_state(self, rule_id: str, state: RuleState) -> int:
        """PostgreSQL: the same transaction as `_transact`, as one autocommit statement.

        Bump, upsert, change-log entry and NOTIFY are one round trip (data-modifying
        CTEs run atomically; the revision row stays locked until the statement commits).
        """
        params = {"rule_id": rule_id, "state": state.state.value,
                  "confidence_max": state.confidence_max, "expires_at": state.expires_at,
                  "reason": state.reason, "set_by": state.set_by, "set_at": state.set_at,
                  "changed_at": utcnow(), "channel": NOTIFY_CHANNEL}

        def write(conn: Connection) -> int:
            return int(conn.execute(_PG_WRITE_STATE, params).scalar_one())

        await self.connect()
        try:
            async with self._write_lock:
                revision = await self.run(write, autocommit_write=True)
            if revision % self._prune_every == 0:
                await self.run(lambda conn: conn.execute(
                    _LOG_PRUNE, {"b_upto": revision - self.change_log_retention}),
                    autocommit_write=True)
            return revision
        except _DB_ERRORS as exc:
            raise StoreError(f"writing state of {rule_id} to the rule database failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    async def revert_expired(self, rule_id: str, expires_at: datetime) -> int | None:
        """Delete the state of `rule_id` if it still expires at `expires_at`.

        Several processes racing on the same expiry produce one delete (one revision);
        the others get None.
        """
        def body(conn: Connection, revision: int) -> None:
            if conn.execute(_STATE_REVERT, {"b_rule_id": rule_id,
                                            "b_expires_at": expires_at}).rowcount == 0:
                raise _NoChange

        return await self._transact(rule_id, STATE_KIND, body)

    async def prune_change_log(self, keep: int) -> int:
        """Delete all but the newest `keep` change-log entries; how many were deleted."""
        def prune(conn: Connection) -> int:
            with conn.begin():
                head = conn.execute(_HEAD).scalar_one()
                return int(conn.execute(delete(ChangeLogRow).where(
                    ChangeLogRow.revision <= head - keep)).rowcount)

        await self.connect()
        return await self.run(prune)

    # master lease -------------------------------------------------------------

    async def read_lease(self) -> LeaseInfo:
        def read(conn: Connection) -> LeaseInfo:
            row = conn.execute(select(MasterLeaseRow.__table__)
                               .where(MasterLeaseRow.id == 1)).one()
            return LeaseInfo(row.holder, row.token, row.heartbeat, row.acquired_at,
                             row.heartbeat_at)

        return await self._read("the master lease", read, poll=True)

    async def acquire_lease(self, holder: str, seen: LeaseInfo) -> Fence | None:
        """Take the lease if the row is still exactly as `seen`; the fence, or None."""
        def acquire(conn: Connection) -> bool:
            now = utcnow()
            with conn.begin():
                return conn.execute(
                    update(MasterLeaseRow)
                    .where(MasterLeaseRow.id == 1, MasterLeaseRow.token == seen.token,
                           MasterLeaseRow.heartbeat == seen.heartbeat)
                    .values(holder=holder, token=MasterLeaseRow.token + 1,
                            heartbeat=MasterLeaseRow.heartbeat + 1,
                            acquired_at=now, heartbeat_at=now)).rowcount == 1

        await self.connect()
        return Fence(holder, seen.token + 1) if await self.run(acquire) else None

    async def heartbeat_lease(self, fence: Fence) -> bool:
        def beat(conn: Connection) -> bool:
            with conn.begin():
                try:
                    _check_fence(conn, fence)
                except MasterLeaseLost:
                    return False
                return True

        await self.connect()
        return await self.run(beat)

    async def release_lease(self, fence: Fence) -> bool:
        def release(conn: Connection) -> bool:
            with conn.begin():
                return conn.execute(
                    update(MasterLeaseRow)
                    .where(MasterLeaseRow.id == 1, MasterLeaseRow.holder == fence.holder,
                           MasterLeaseRow.token == fence.token)
                    .values(holder=None, heartbeat=MasterLeaseRow.heartbeat + 1)
                ).rowcount == 1

        await self.connect()
        return await self.run(release)

    # PostgreSQL notifications ---------------------------------------------------

    def asyncpg_dsn(self) -> str:
        """This URL as a plain libpq DSN for a dedicated asyncpg connection."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)


# Statements built once (their compiled form is cached; building them per call costs
# more than SQLite's own work). Bound names of WHERE clauses start with b_.
_HEAD: Final = select(RevisionRow.revision).where(RevisionRow.id == 1)
_HEAD_AND_ID: Final = select(RevisionRow.revision, RevisionRow.database_id).where(
    RevisionRow.id == 1)
_BUMP: Final = update(RevisionRow).where(RevisionRow.id == 1).values(
    revision=RevisionRow.revision + 1)
_BUMP_RETURNING: Final = _BUMP.returning(RevisionRow.revision)
_LOG_INSERT: Final = insert(ChangeLogRow)
_LOG_PRUNE: Final = delete(ChangeLogRow).where(ChangeLogRow.revision <= bindparam("b_upto"))
_NOTIFY: Final = select(func.pg_notify(NOTIFY_CHANNEL, bindparam("b_payload")))
_RULE_CONTENT: Final = select(RuleRow.rule_version, RuleRow.yaml_content).where(
    RuleRow.rule_id == bindparam("b_rule_id"))
_RULE_INSERT: Final = insert(RuleRow)
_RULE_UPDATE: Final = update(RuleRow).where(RuleRow.rule_id == bindparam("b_rule_id"))
_RULE_DELETE: Final = delete(RuleRow).where(RuleRow.rule_id == bindparam("b_rule_id"))
_STATE_READ: Final = select(STATE_TABLE).where(StateRow.rule_id == bindparam("b_rule_id"))
_STATE_INSERT: Final = insert(StateRow)
_STATE_UPDATE: Final = update(StateRow).where(StateRow.rule_id == bindparam("b_rule_id"))
_STATE_DELETE: Final = delete(StateRow).where(StateRow.rule_id == bindparam("b_rule_id"))
_PG_WRITE_STATE: Final = text("""
WITH rev AS (
    UPDATE ttp_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision
), st AS (
    INSERT INTO ttp_rule_state
        (rule_id, state, confidence_max, expires_at, reason, set_by, set_at, revision)
    SELECT :rule_id, :state, CAST(:confidence_max AS DOUBLE PRECISION),
           CAST(:expires_at AS TIMESTAMP WITHOUT TIME ZONE), :reason, :set_by,
           CAST(:set_at AS TIMESTAMP WITHOUT TIME ZONE), rev.revision
    FROM rev
    ON CONFLICT (rule_id) DO UPDATE SET
        state = EXCLUDED.state, confidence_max = EXCLUDED.confidence_max,
        expires_at = EXCLUDED.expires_at, reason = EXCLUDED.reason,
        set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at, revision = EXCLUDED.revision
    RETURNING revision
), log AS (
    INSERT INTO ttp_change_log (revision, rule_id, change_kind, changed_at)
    SELECT revision, :rule_id, 'state', CAST(:changed_at AS TIMESTAMP WITHOUT TIME ZONE)
    FROM st
)
SELECT revision, pg_notify(:channel, CAST(revision AS TEXT)) FROM st
""").bindparams(
    bindparam("confidence_max", type_=Float()),
    bindparam("expires_at", type_=UTCDateTime()),
    bindparam("set_at", type_=UTCDateTime()),
    bindparam("changed_at", type_=UTCDateTime()),
)
#: The tail's read: built once, so each wake-up only binds its three numbers.
_CHANGES_SINCE: Final = (
    select(ChangeLogRow.revision, ChangeLogRow.rule_id, ChangeLogRow.change_kind,
           RuleRow.rule_version, RuleRow.source_path, RuleRow.yaml_content,
           RuleRow.updated_at, RuleRow.updated_by,
           RuleRow.revision.label("rule_revision"),
           StateRow.state, StateRow.confidence_max, StateRow.expires_at,
           StateRow.reason, StateRow.set_by, StateRow.set_at,
           StateRow.revision.label("state_revision"))
    .select_from(ChangeLogRow)
    .outerjoin(RuleRow, RuleRow.rule_id == ChangeLogRow.rule_id)
    .outerjoin(StateRow, StateRow.rule_id == ChangeLogRow.rule_id)
    .where(ChangeLogRow.revision > bindparam("b_after"),
           ChangeLogRow.revision <= bindparam("b_upto"))
    .order_by(ChangeLogRow.revision)
    .limit(bindparam("b_limit"))
)
_STATE_REVERT: Final = delete(StateRow).where(
    StateRow.rule_id == bindparam("b_rule_id"),
    StateRow.expires_at == bindparam("b_expires_at", type_=UTCDateTime()))


def _check_fence(conn: Connection, fence: Fence) -> None:
    """Inside a write: prove `fence` still holds the master lease (and count a heartbeat)."""
    result = conn.execute(
        update(MasterLeaseRow)
        .where(MasterLeaseRow.id == 1, MasterLeaseRow.holder == fence.holder,
               MasterLeaseRow.token == fence.token)
        .values(heartbeat=MasterLeaseRow.heartbeat + 1, heartbeat_at=utcnow()))
    if result.rowcount != 1:
        raise MasterLeaseLost(f"{fence.holder} no longer holds the master lease")


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


def _script_directory() -> Any:
    from alembic.script import ScriptDirectory

    from decnet.ttp.store.sql.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config())
