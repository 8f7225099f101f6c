"""`RuleRepository`: every read and write of the database store, behind one error boundary.

Every public method raises the `StoreError` family (never a raw SQLAlchemy or socket
error). Writes follow one path (`_write`): in one transaction, bump the single
`ttp_revision` row (its row lock serializes writers, so revisions are handed out and
become visible in commit order, without gaps), write the row with that revision, append
one `ttp_change_log` entry (a state change also its `ttp_state_history` entry, so the audit
log never misses a committed change) and, on PostgreSQL, `NOTIFY` (delivered at commit); a
write that would change nothing rolls back and consumes no revision.

Longer than most modules on purpose: it is one concept, the boundary between the store
and SQL, and reads best whole (each method is a few lines over `statements` and `lease`,
which hold the SQL itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, insert, inspect, or_, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from decnet.ttp.constants import (
    CHANGE_LOG_RETENTION,
    MAX_SCOPED_STATES_PER_RULE,
    STATE_HISTORY_RETENTION_DAYS,
)
from decnet.ttp.errors import SchemaOutdatedError, StoreError
from decnet.ttp.store.codec import state_from_dict, state_to_dict
from decnet.ttp.store.sql import lease
from decnet.ttp.store.sql import statements as sql
from decnet.ttp.store.sql.engines import Engines
from decnet.ttp.store.sql.models import Base, HistoryRow, MasterLeaseRow, RevisionRow
from decnet.ttp.store.sql.rows import (
    Fence,
    Head,
    LeaseInfo,
    LogEntry,
    RuleWrite,
    Snapshot,
    StoredContent,
    StoredRule,
    StoredScoped,
    StoredState,
    scoped_of,
    state_of,
)
from decnet.ttp.store.sql.schema import (
    schema_head,
    schema_revisions,
    script_directory,
    upgrade_hint,
)
from decnet.vocabulary import (
    DEFAULT_STATE,
    Audit,
    ChangeKind,
    Clock,
    HistoryAction,
    HistoryEntry,
    InvalidScopeError,
    RuleState,
    utcnow,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_DB_ERRORS = (SQLAlchemyError, OSError, TimeoutError, ConnectionError)


class _NoChange(Exception):
    """Raised inside a write transaction to roll it back: nothing would change."""


class RuleRepository:
    """Runs every query of the database store on the engines of one database.

    `url` is an SQLAlchemy URL (`sqlite+aiosqlite:///rules.db`,
    `postgresql+asyncpg://…`, `mysql+asyncmy://…`, or the same without a driver); None
    means a private in-memory SQLite database, whose schema is created on first use. Any
    other database must have been migrated (`decnet-ttp db upgrade`); an older schema is
    refused with `SchemaOutdatedError`. Engines are created lazily, on first use.
    `clock` stamps the informational time columns.
    """

    def __init__(self, url: str | URL | None = None, *,
                 change_log_retention: int = CHANGE_LOG_RETENTION,
                 check_schema: bool = True, clock: Clock = utcnow,
                 history_retention: timedelta = timedelta(
                     days=STATE_HISTORY_RETENTION_DAYS)) -> None:
        self.engines = Engines(url)
        #: Stamps `updated_at`, `changed_at` and the lease's times (informational only:
        #: propagation follows revisions, never these).
        self.clock = clock
        self.change_log_retention = max(1, change_log_retention)
        self._prune_every = max(1, min(1000, self.change_log_retention // 10))
        self._check_schema = check_schema
        #: How long a state-history entry is kept (pruned by the writer).
        self.history_retention = history_retention
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._commit_listeners: list[Callable[[int], None]] = []

    def __repr__(self) -> str:
        return f"RuleRepository({self.engines!r})"

    @property
    def url(self) -> URL:
        return self.engines.url

    @property
    def dialect(self) -> str:
        """`sqlite`, `postgresql` or `mysql` (MariaDB too)."""
        return self.engines.dialect

    @property
    def is_memory(self) -> bool:
        return self.engines.is_memory

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (on SQLite: for migrations and ad-hoc access only)."""
        return self.engines.engine

    @property
    def statements(self) -> int:
        """SQL statements issued through this repository's engines (for /metrics)."""
        return self.engines.statements

    def asyncpg_dsn(self) -> str:
        return self.engines.asyncpg_dsn()

    async def dispose(self) -> None:
        await self.engines.dispose()
        self._ready = False

    def on_commit(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call `listener(revision)` after each write this repository commits (this
        process's writes: the master's publisher learns of them without a query); the
        function returned removes it. A listener must not block or raise."""
        self._commit_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._commit_listeners.remove(listener)

        return remove

    async def run(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation(connection)` (for tests and tools); no error translation."""
        return await self.engines.run(operation)

    async def guarded(self, what: str, operation: Callable[[Connection], T]) -> T:
        """Run `operation(connection)` behind this repository's error boundary (tables
        beside the rule store's own, such as the API tokens)."""
        return await self._guarded(what, operation)

    async def _guarded(self, what: str, operation: Callable[[Connection], T], *,
                       poll: bool = False, connect: bool = True) -> T:
        """Run one operation; database errors become `StoreError` naming `what`.

        A read that meets a pooled connection that died while idle (database restarted,
        network cut) is retried once: the pool has been invalidated by then.
        """
        try:
            if connect:
                await self.connect()
            try:
                return await self.engines.run(operation, poll=poll)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                return await self.engines.run(operation, poll=poll)
        except StoreError:
            raise
        except _DB_ERRORS as exc:
            raise StoreError(f"{what} in the rule database failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    # schema -----------------------------------------------------------------

    async def connect(self) -> None:
        """Check the schema (create it, in memory) on first use. Idempotent.

        A SQLite file is checked on every call (see `Engines.check_file`): a missing one
        is never created here (only `decnet-ttp db upgrade` does), a replaced one refused.
        """
        self.engines.check_file(may_be_missing=not self._check_schema)
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            try:
                if self.engines.is_memory:
                    await self.create_schema()
                elif self._check_schema:
                    await self.check_schema()
            except StoreError:
                raise
            except _DB_ERRORS as exc:
                raise StoreError(f"cannot open the rule database {self!r}: {exc}") from exc
            self._ready = True

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; None when it has no schema."""
        def read(conn: Connection) -> str | None:
            if not inspect(conn).has_table("alembic_version"):
                return None
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            return str(versions[0][0]) if versions else None

        return await self._guarded("reading the schema revision", read, connect=False)

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
        """Create the tables from the models and stamp them (in-memory databases)."""
        def create(conn: Connection) -> None:
            from alembic.runtime.migration import MigrationContext  # in-memory stores only

            with conn.begin():
                Base.metadata.create_all(conn)
                if conn.execute(select(RevisionRow.id)).first() is None:
                    conn.execute(insert(RevisionRow).values(
                        id=1, revision=0, database_id=uuid.uuid4().hex))
                    conn.execute(insert(MasterLeaseRow).values(
                        id=1, holder=None, token=0, heartbeat=0))
                MigrationContext.configure(conn).stamp(script_directory(), schema_head())

        await self._guarded("creating the schema", create, connect=False)

    # reads ------------------------------------------------------------------

    async def head(self) -> Head:
        """The last committed revision and the database's identity: the one cheap query
        of an idle tail."""
        def read(conn: Connection) -> Head:
            revision, database_id = conn.execute(sql.HEAD_AND_ID).one()
            return Head(int(revision), self._identity(database_id))

        return await self._guarded("reading the revision", read, poll=True)

    async def head_revision(self) -> int:
        """The last committed revision."""
        return (await self.head()).revision

    def _identity(self, database_id: str | None) -> str:
        file_identity = self.engines.file_identity
        return f"{database_id or '-'}@{file_identity}" if file_identity \
            else database_id or "-"

    async def snapshot(self, compiler: str | None = None) -> Snapshot:
        """Every rule and state. The revision is read first, so rows are at least that new.

        A rule's stored form is read only where `compiler` wrote it (see
        `decnet.ttp.rules.stored_form.compiler_id`).
        """
        params = {"b_compiler": compiler}

        def read(conn: Connection) -> Snapshot:
            head, database_id = conn.execute(sql.HEAD_AND_ID).one()
            rules = [StoredRule(*row) for row in conn.execute(sql.RULES, params)]
            states = {row.rule_id: StoredState(row.revision, state_of(row))
                      for row in conn.execute(sql.STATES)}
            return Snapshot(int(head), rules, states, self._identity(database_id),
                            _all_scoped(conn))

        return await self._guarded("reading the rules", read)

    async def rule_texts(self, rule_ids: list[str]) -> dict[str, str]:
        """`rule_id -> yaml_content` of those of `rule_ids` that are stored."""
        def read(conn: Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(rule_ids), 500):
                chunk = {"b_rule_ids": rule_ids[start:start + 500]}
                found.update((rule_id, text)
                             for rule_id, text in conn.execute(sql.RULE_TEXTS, chunk))
            return found

        return await self._guarded("reading the rules", read)

    async def read_state(self, rule_id: str) -> StoredState | None:
        def read(conn: Connection) -> StoredState | None:
            row = conn.execute(sql.STATE_READ, {"b_rule_id": rule_id}).first()
            return None if row is None else StoredState(row.revision, state_of(row))

        return await self._guarded("reading a state", read)

    async def read_states(self) -> dict[str, StoredState]:
        def read(conn: Connection) -> dict[str, StoredState]:
            return {row.rule_id: StoredState(row.revision, state_of(row))
                    for row in conn.execute(sql.STATES)}

        return await self._guarded("reading the states", read)

    async def read_scoped(self, rule_id: str) -> StoredScoped:
        """The scoped states of `rule_id` (expired or not)."""
        def read(conn: Connection) -> StoredScoped:
            rows = list(conn.execute(sql.SCOPED_READ, {"b_rule_id": rule_id}))
            newest = max((int(row.revision) for row in rows), default=0)
            return StoredScoped(newest, tuple(scoped_of(rows).get(rule_id, ())))

        return await self._guarded("reading scoped states", read)

    async def read_all_scoped(self) -> dict[str, StoredScoped]:
        """Every rule's scoped states (expired or not); rules without any left out."""
        return await self._guarded("reading scoped states", _all_scoped)

    async def read_history(self, rule_id: str | None = None, *,
                           since: datetime | None = None,
                           limit: int | None = None, until: datetime | None = None,
                           by: str | None = None) -> list[HistoryEntry]:
        """State-history entries, oldest first (the newest `limit` when given); `until`:
        none later, `by`: only those made by that person or through that token (`via`)."""
        query = sql.HISTORY_SELECT
        if rule_id is not None:
            query = query.where(HistoryRow.rule_id == rule_id)
        if until is not None:
            query = query.where(HistoryRow.changed_at <= until)
        if by is not None:
            query = query.where(or_(HistoryRow.changed_by == by, HistoryRow.via == by))
        oldest = self.clock() - self.history_retention
        query = query.where(HistoryRow.changed_at >= (max(since, oldest) if since else oldest))
        if limit is not None:
            query = query.order_by(None).order_by(HistoryRow.id.desc()).limit(limit)

        def read(conn: Connection) -> list[HistoryEntry]:
            entries = [HistoryEntry(row.rule_id, HistoryAction(row.action), row.scope_key,
                                    _state_from_json(row.old_value),
                                    _state_from_json(row.new_value), row.changed_by,
                                    row.reason, row.changed_at, row.via)
                       for row in conn.execute(query)]
            return entries if limit is None else entries[::-1]

        return await self._guarded("reading the state history", read)

    async def rule_contents(self) -> dict[str, StoredContent]:
        """What the master compares with its files, for every stored rule."""
        def read(conn: Connection) -> dict[str, StoredContent]:
            return {rule_id: StoredContent(version, content, compiled_by)
                    for rule_id, version, content, compiled_by
                    in conn.execute(sql.RULE_CONTENTS)}

        return await self._guarded("reading the rules", read)

    async def rule_exists(self, rule_id: str) -> bool:
        def read(conn: Connection) -> bool:
            return conn.execute(sql.RULE_EXISTS, {"b_rule_id": rule_id}).first() is not None

        return await self._guarded("reading a rule", read)

    async def changes_since(self, watermark: int, head: int, limit: int) -> list[LogEntry]:
        """Change-log entries in `(watermark, head]`, oldest first, with current rows."""
        params = {"b_after": watermark, "b_upto": head, "b_limit": limit}

        def read(conn: Connection) -> list[LogEntry]:
            entries = []
            for row in conn.execute(sql.CHANGES_SINCE, params):
                rule = None if row.rule_revision is None else StoredRule(
                    row.rule_id, row.rule_version, row.source_path, row.yaml_content,
                    row.updated_at, row.updated_by, row.rule_revision, row.compiled_form,
                    row.compiled_by)
                state = None if row.state_revision is None else StoredState(
                    row.state_revision, state_of(row))
                entries.append(LogEntry(row.revision, row.rule_id,
                                        ChangeKind(row.change_kind), rule, state,
                                        database=self._identity(row.database_id)))
            scoped_ids = sorted({e.rule_id for e in entries
                                 if e.change_kind is ChangeKind.SCOPED})
            if not scoped_ids:
                return entries
            rows = list(conn.execute(sql.SCOPED_OF_RULES, {"b_rule_ids": scoped_ids}))
            newest: dict[str, int] = {}
            for scoped_row in rows:
                newest[scoped_row.rule_id] = max(newest.get(scoped_row.rule_id, 0),
                                                 int(scoped_row.revision))
            current = scoped_of(rows)
            return [entry if entry.change_kind is not ChangeKind.SCOPED else LogEntry(
                entry.revision, entry.rule_id, entry.change_kind, entry.rule, entry.state,
                StoredScoped(max(entry.revision, newest.get(entry.rule_id, 0)),
                             tuple(current.get(entry.rule_id, ()))), entry.database)
                for entry in entries]

        return await self._guarded("reading the change log", read, poll=True)

    async def oldest_logged_revision(self) -> int | None:
        def read(conn: Connection) -> int | None:
            value = conn.execute(sql.LOG_OLDEST).scalar()
            return None if value is None else int(value)

        return await self._guarded("reading the change log", read)

    # writes -----------------------------------------------------------------

    async def _write(self, rule_id: str, kind: ChangeKind,
                     transaction: Callable[[Connection], int | None]) -> int | None:
        """The one write path: error boundary, writer lock, then pruning of the change log
        (every `_prune_every` revisions, after the commit); the revision, or None."""
        try:
            await self.connect()
            if self.dialect == "sqlite":  # one writer thread serializes already
                revision = await self.engines.run(transaction)
            else:
                async with self._write_lock:
                    revision = await self.engines.run(transaction)
            if revision is not None:
                for listener in tuple(self._commit_listeners):
                    listener(revision)
            if revision is not None and revision % self._prune_every == 0:
                params = {"b_upto": revision - self.change_log_retention}
                await self.engines.run(functools.partial(_prune_committed, params=params))
            return revision
        except StoreError:
            raise
        except _DB_ERRORS as exc:
            raise StoreError(f"writing {kind} of {rule_id} to the rule database failed: "
                             f"{type(exc).__name__}: {exc}") from exc

    def _in_transaction(self, rule_id: str, kind: ChangeKind,
                        body: Callable[[Connection, int], None],
                        fence: Fence | None = None) -> Callable[[Connection], int | None]:
        """`body` inside a revision-bumping transaction, as one operation for `_write`."""
        def transaction(conn: Connection) -> int | None:
            if self.dialect == "sqlite":
                conn.execution_options(decnet_sqlite_begin="IMMEDIATE")
            try:
                with conn.begin():
                    if fence is not None:
                        lease.check_fence(conn, fence, self.clock())
                    revision = self._bump(conn)
                    body(conn, revision)
                    conn.execute(sql.LOG_INSERT, {"revision": revision, "rule_id": rule_id,
                                                  "change_kind": kind.value,
                                                  "changed_at": self.clock()})
                    if self.dialect == "postgresql":
                        conn.execute(sql.NOTIFY, {"b_payload": str(revision)})
                return revision
            except _NoChange:
                return None

        return transaction

    def _bump(self, conn: Connection) -> int:
        if self.dialect != "mysql":
            return int(conn.execute(sql.BUMP_RETURNING).scalar_one())
        conn.execute(sql.BUMP)
        return int(conn.execute(sql.HEAD).scalar_one())

    async def upsert_rule(self, rule_id: str, rule_version: int, yaml_content: str, *,
                          source_path: str | None, updated_by: str | None,
                          fence: Fence | None = None, compiled_form: str | None = None,
                          compiled_by: str | None = None) -> RuleWrite | None:
        """Insert or replace a definition (and its stored form, written by
        `compiled_by`); None when the stored version and text are identical (the form
        is then left as it is: see `refresh_form`)."""
        state_now: list[RuleState] = []

        def body(conn: Connection, revision: int) -> None:
            key = {"b_rule_id": rule_id}
            current = conn.execute(sql.RULE_CONTENT, key).first()
            if current is not None and tuple(current) == (rule_version, yaml_content):
                raise _NoChange
            values = {"rule_version": rule_version, "yaml_content": yaml_content,
                      "source_path": source_path, "updated_at": self.clock(),
                      "updated_by": updated_by, "revision": revision,
                      "compiled_form": compiled_form, "compiled_by": compiled_by}
            if current is None:
                conn.execute(sql.RULE_INSERT, {"rule_id": rule_id, **values})
            else:
                conn.execute(sql.RULE_UPDATE, {**key, **values})
            row = conn.execute(sql.STATE_READ, key).first()
            state_now.append(DEFAULT_STATE if row is None else state_of(row))

        kind = ChangeKind.DEFINITION
        revision = await self._write(rule_id, kind,
                                     self._in_transaction(rule_id, kind, body, fence))
        return None if revision is None else RuleWrite(revision, state_now[-1])

    async def refresh_form(self, rule_id: str, rule_version: int, yaml_content: str, *,
                           compiled_form: str | None, compiled_by: str,
                           fence: Fence | None = None) -> bool:
        """Replace the stored form of a definition that is still exactly
        `(rule_version, yaml_content)`: no new revision (the rule is unchanged; workers
        that start later load the new form). Whether a row was updated."""
        params = {"b_rule_id": rule_id, "b_version": rule_version, "b_yaml": yaml_content,
                  "compiled_form": compiled_form, "compiled_by": compiled_by}

        def write(conn: Connection) -> bool:
            if self.dialect == "sqlite":
                conn.execution_options(decnet_sqlite_begin="IMMEDIATE")
            with conn.begin():
                if fence is not None:
                    lease.check_fence(conn, fence, self.clock())
                return bool(conn.execute(sql.FORM_REFRESH, params).rowcount)

        return await self._guarded(f"writing the stored form of {rule_id}", write)

    async def delete_rule(self, rule_id: str, *, fence: Fence | None = None) -> int | None:
        """Remove a definition (its state stays); None when there was none."""
        def body(conn: Connection, revision: int) -> None:
            if conn.execute(sql.RULE_DELETE, {"b_rule_id": rule_id}).rowcount == 0:
                raise _NoChange

        kind = ChangeKind.DELETED
        return await self._write(rule_id, kind,
                                 self._in_transaction(rule_id, kind, body, fence))

    def _record(self, conn: Connection, rule_id: str, scope_key: str | None,
                old: RuleState | None, new: RuleState | None, note: Audit,
                revision: int) -> None:
        """Append one history row (same transaction as the change); prune by age now
        and then."""
        now = self.clock()
        conn.execute(sql.HISTORY_INSERT, {
            "rule_id": rule_id, "action": note.action.value, "scope_key": scope_key,
            "old_value": _state_to_json(old), "new_value": _state_to_json(new),
            "changed_by": note.by, "reason": note.reason, "changed_at": now,
            "via": note.via})
        if revision % self._prune_every == 0:
            conn.execute(sql.HISTORY_PRUNE, {"b_before": now - self.history_retention})

    async def write_state(self, rule_id: str, state: RuleState,
                          note: Audit | None = None) -> int | None:
        """Persist a state (the default state deletes the row) and its history entry;
        None when nothing changed."""
        kind = ChangeKind.STATE

        def body(conn: Connection, revision: int) -> None:
            key = {"b_rule_id": rule_id}
            old_row = conn.execute(sql.STATE_READ, key).first() if note is not None else None
            old = None if old_row is None else state_of(old_row)
            if state.is_default:
                if conn.execute(sql.STATE_DELETE, key).rowcount == 0:
                    raise _NoChange
            else:
                values = {"state": state.state.value, "confidence_max": state.confidence_max,
                          "expires_at": state.expires_at, "reason": state.reason,
                          "set_by": state.set_by, "set_at": state.set_at,
                          "revision": revision}
                if conn.execute(sql.STATE_UPDATE, {**key, **values}).rowcount == 0:
                    conn.execute(sql.STATE_INSERT, {"rule_id": rule_id, **values})
            if note is not None:
                self._record(conn, rule_id, None, old,
                             None if state.is_default else state, note, revision)

        return await self._write(rule_id, kind, self._in_transaction(rule_id, kind, body))

    async def revert_expired(self, rule_id: str, expires_at: datetime,
                             note: Audit | None = None) -> int | None:
        """Delete the state of `rule_id` if it still expires at `expires_at`.

        Several processes racing on the same expiry produce one delete (one revision,
        one history entry); the others get None.
        """
        def body(conn: Connection, revision: int) -> None:
            key = {"b_rule_id": rule_id}
            old_row = conn.execute(sql.STATE_READ, key).first() if note is not None else None
            if conn.execute(sql.STATE_REVERT, {**key,
                                               "b_expires_at": expires_at}).rowcount == 0:
                raise _NoChange
            if note is not None and old_row is not None:
                self._record(conn, rule_id, None, state_of(old_row), None, note, revision)

        kind = ChangeKind.STATE
        return await self._write(rule_id, kind, self._in_transaction(rule_id, kind, body))

    async def write_scoped(self, rule_id: str, scope_key: str, state: RuleState,
                           note: Audit) -> int | None:
        """Persist one scoped state (the default state deletes it) and its history entry;
        None when nothing changed. At most `MAX_SCOPED_STATES_PER_RULE` per rule."""
        def body(conn: Connection, revision: int) -> None:
            key = {"b_rule_id": rule_id, "b_scope_key": scope_key}
            old_row = conn.execute(sql.SCOPED_ONE, key).first()
            old = None if old_row is None else state_of(old_row)
            if state.is_default:
                if conn.execute(sql.SCOPED_DELETE, key).rowcount == 0:
                    raise _NoChange
            else:
                values = {"state": state.state.value, "confidence_max": state.confidence_max,
                          "expires_at": state.expires_at, "reason": state.reason,
                          "set_by": state.set_by, "set_at": state.set_at,
                          "revision": revision}
                if old_row is not None:
                    conn.execute(sql.SCOPED_UPDATE, {**key, **values})
                else:
                    count = conn.execute(sql.SCOPED_COUNT, {"b_rule_id": rule_id}).scalar_one()
                    if count >= MAX_SCOPED_STATES_PER_RULE:
                        raise InvalidScopeError(
                            f"a rule carries at most {MAX_SCOPED_STATES_PER_RULE} scoped "
                            "states; clear some first")
                    conn.execute(sql.SCOPED_INSERT, {"rule_id": rule_id,
                                                     "scope_key": scope_key, **values})
            self._record(conn, rule_id, scope_key, old, None if state.is_default else state,
                         note, revision)

        kind = ChangeKind.SCOPED
        return await self._write(rule_id, kind, self._in_transaction(rule_id, kind, body))

    async def revert_scoped_expired(self, rule_id: str, scope_key: str,
                                    expires_at: datetime, note: Audit) -> int | None:
        """Delete that scoped state if it still expires at `expires_at` (one winner)."""
        def body(conn: Connection, revision: int) -> None:
            key = {"b_rule_id": rule_id, "b_scope_key": scope_key}
            old_row = conn.execute(sql.SCOPED_ONE, key).first()
            if old_row is None or old_row.expires_at != expires_at:
                raise _NoChange
            conn.execute(sql.SCOPED_DELETE, key)
            self._record(conn, rule_id, scope_key, state_of(old_row), None, note, revision)

        kind = ChangeKind.SCOPED
        return await self._write(rule_id, kind, self._in_transaction(rule_id, kind, body))

    async def prune_change_log(self, keep: int) -> int:
        """Delete all but the newest `keep` change-log entries; how many were deleted."""
        def prune(conn: Connection) -> int:
            with conn.begin():
                head = conn.execute(sql.HEAD).scalar_one()
                return _prune(conn, {"b_upto": head - keep})

        return await self._guarded("pruning the change log", prune)

    # master lease (its SQL: `lease`) ---------------------------------------------

    async def read_lease(self) -> LeaseInfo:
        return await self._guarded("reading the master lease", lease.read, poll=True)

    async def acquire_lease(self, holder: str, seen: LeaseInfo) -> Fence | None:
        """Take the lease if the row is still exactly as `seen`; the fence, or None."""
        return await self._guarded("taking the master lease", functools.partial(
            lease.acquire, holder=holder, seen=seen, now=self.clock()))

    async def heartbeat_lease(self, fence: Fence) -> bool:
        return await self._guarded("the master lease heartbeat", functools.partial(
            lease.heartbeat, fence=fence, now=self.clock()))

    async def release_lease(self, fence: Fence) -> bool:
        return await self._guarded("releasing the master lease", functools.partial(
            lease.release, fence=fence))


def _prune(conn: Connection, params: dict[str, Any]) -> int:
    return int(conn.execute(sql.LOG_PRUNE, params).rowcount)


def _prune_committed(conn: Connection, params: dict[str, Any]) -> int:
    with conn.begin():
        return _prune(conn, params)


def _all_scoped(conn: Connection) -> dict[str, StoredScoped]:
    rows = list(conn.execute(sql.SCOPED_ALL))
    newest: dict[str, int] = {}
    for row in rows:
        newest[row.rule_id] = max(newest.get(row.rule_id, 0), int(row.revision))
    return {rule_id: StoredScoped(newest[rule_id], tuple(items))
            for rule_id, items in scoped_of(rows).items()}


def _state_to_json(state: RuleState | None) -> str | None:
    return None if state is None else orjson.dumps(state_to_dict(state)).decode()


def _state_from_json(text: str | None) -> RuleState | None:
    return None if text is None else state_from_dict(orjson.loads(text))
