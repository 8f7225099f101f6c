"""`DatabaseRuleStore`: rules and operator state in SQL, shared by a swarm.

Propagation is by revision number, never by timestamp: every write takes the next
revision of the single `ttp_revision` row and appends one `ttp_change_log` entry
(see `decnet.ttp.store.sql.repository`). A worker's `tail_db` polls that one row
and, when it moved, reads the log entries past its watermark joined with the
current rows. On PostgreSQL a LISTEN connection wakes the tail at once, and the
notified revision lets it read the log without reading that row first.

The master's `sync_from_filesystem` projects a `FilesystemRuleStore` onto the
`ttp_rule` table while it holds the master lease (`ttp_master_lease`); a second
master started by mistake stands by until the first stops or goes silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from decnet.bus.base import Bus
from decnet.ttp.constants import (
    CHANGE_LOG_BATCH,
    DB_CONNECT_TIMEOUT,
    LISTEN_KEEPALIVE,
    MASTER_LEASE_TTL,
    MASTER_RETRY_INITIAL,
    MAX_REVISION,
    NOTIFY_CHANNEL,
    TAIL_POLL_INTERVAL,
    TAIL_QUERY_TIMEOUT,
)
from decnet.ttp.errors import (
    InvalidRuleId,
    MasterLeaseLost,
    RuleError,
    RuleSetError,
    StoreError,
)
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule, rule_id_of_path
from decnet.ttp.store.base import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    RuleChange,
    RuleState,
    utcnow,
    validate_rule_id,
)
from decnet.ttp.store.common import BaseRuleStore
from decnet.ttp.store.sql.repository import (
    DEFINITION_KIND,
    DELETED_KIND,
    DatabaseFileChanged,
    Fence,
    LeaseInfo,
    LogEntry,
    RuleRepository,
    Snapshot,
    StoredRule,
    StoredState,
)

if TYPE_CHECKING:
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

log = logging.getLogger(__name__)

__all__ = ["DatabaseRuleStore", "RuleRepository", "TailStats", "sync_from_filesystem",
           "tail_db"]

MasterRole = Literal["idle", "standby", "active"]

#: What a database that went away (or refused a statement) raises through the repository.
_DB_FAILURES = (StoreError, SQLAlchemyError, OSError, TimeoutError)


class _Outage:
    """Reports a run of database failures as one outage.

    The first failure is logged at WARNING, the next ones at DEBUG (a retry loop would
    otherwise log once per attempt), and the first success after them once.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    def failed(self, exc: BaseException, consequence: str) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("%s: the rule database failed (%s: %s); %s (further failures are "
                        "logged at DEBUG)", self.what, type(exc).__name__, exc, consequence)
        else:
            log.debug("%s: the rule database failed again (%d in a row): %s: %s",
                      self.what, self.failures, type(exc).__name__, exc)

    def recovered(self, how: str = "") -> None:
        if self.failures:
            log.warning("%s: the rule database works again after %d failure(s)%s",
                        self.what, self.failures, how)
            self.failures = 0

    def backoff(self, cap: float, initial: float = MASTER_RETRY_INITIAL) -> float:
        """Seconds to wait before the next attempt: doubled per failure, at most `cap`."""
        return float(min(cap, initial * 2 ** min(max(self.failures - 1, 0), 30)))


@dataclass(slots=True)
class _Wakeup:
    """What wakes a tail between polls: notifications (PostgreSQL LISTEN)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    #: The highest revision notified since the tail last looked (a hint: the poll
    #: stays the safety net); 0 when none.
    revision: int = 0
    #: A full poll is wanted (the listener (re)connected, or a payload was unreadable).
    catch_up: bool = False


@dataclass(slots=True)
class TailStats:
    """Counters of a tailing store, for a worker's /metrics."""

    polls: int = 0
    changes_applied: int = 0
    poll_errors: int = 0
    resyncs: int = 0
    notifications: int = 0
    #: `time.monotonic()` of the last successful poll; None before the first.
    last_sync: float | None = None
    #: Revision the tail has applied up to.
    watermark: int | None = None
    #: Times the tail found another database than the one it followed (a SQLite file
    #: replaced, a database recreated) and reloaded everything from the new one.
    database_replacements: int = 0
    #: Why the tail cannot use the database at all (its SQLite file is gone or was
    #: replaced, see `DatabaseFileChanged`); None while it can. The worker reports it
    #: on /healthz and /metrics.
    database_problem: str | None = None


class DatabaseRuleStore(BaseRuleStore):
    """Rules (`ttp_rule`) and operator state (`ttp_rule_state`) in a database.

    `repo` is a `RuleRepository` or a database URL; None means a private in-memory
    SQLite database. A stored row whose YAML does not compile makes its rule absent:
    it is logged with its rule id, listed in `problems` and left out of
    `load_compiled`; a tail that receives such a revision of a rule it had announces
    the rule deleted. The other rules keep working.
    """

    def __init__(self, repo: RuleRepository | str | None = None, *,
                 bus: Bus | None = None) -> None:
        super().__init__(bus=bus)
        self._owns_repo = not isinstance(repo, RuleRepository)
        self.repo = repo if isinstance(repo, RuleRepository) else RuleRepository(repo)
        #: rule_id -> (revision, compiled rule with the default state): the compile cache.
        self._compiled: dict[str, tuple[int, CompiledRule]] = {}
        # What this process has announced (or loaded before following), by revision.
        self._known_defs: dict[str, int] = {}
        self._known_states: dict[str, StoredState] = {}
        self._watermark: int | None = None
        #: Identity of the database the view was taken from (see `Head`).
        self._identity: str | None = None
        self._view_lock = asyncio.Lock()
        #: rule_id -> the errors of its stored row (skipped until fixed).
        self.problems: dict[str, tuple[RuleError, ...]] = {}
        self._reported: dict[str, int] = {}
        self.stats = TailStats()
        self.master_role: MasterRole = "idle"
        self._on_role: Callable[[MasterRole], None] | None = None
        self._on_reconciled: Callable[[int, int], None] | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._started = False
        #: Failed reads served from this store's view (`get_state`, `load_compiled`).
        self._read_outage = _Outage("store reads")

    # lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the schema, take the initial view and arm expiry timers."""
        if self._started:
            return
        await self.repo.connect()
        await self._ensure_view()
        self._started = True

    def start_tail(self, poll_interval: float = TAIL_POLL_INTERVAL, *,
                   listen: bool = True) -> asyncio.Task[None]:
        """Run `tail_db(poll_interval, listen=listen)` in the background until `stop()`."""
        if self._tail_task is None or self._tail_task.done():
            self._tail_task = asyncio.get_running_loop().create_task(
                self.tail_db(poll_interval, listen=listen), name="decnet-ttp-tail")
        return self._tail_task

    async def stop(self) -> None:
        task, self._tail_task = self._tail_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.close_shared()
        if self._owns_repo:
            await self.repo.dispose()
        self._started = False

    # the contract ---------------------------------------------------------------

    async def load_compiled(self) -> list[CompiledRule]:
        """Every stored rule with its state. When the database cannot be read and this
        store already has a view (a worker during an outage), that view is returned
        (see `cached_rules`) and the failure logged; a first load raises `StoreError`.
        """
        try:
            snapshot = await self.repo.snapshot()
        except StoreError as exc:
            if self._watermark is None:
                raise
            self._read_outage.failed(exc, "serving the last good rules and states")
            return self.cached_rules()
        self._read_outage.recovered()
        await self._ensure_view(snapshot)
        now = utcnow()
        present = set()
        rules = []
        for row in snapshot.rules:
            present.add(row.rule_id)
            compiled = self._compile(row)
            if compiled is None:
                continue
            stored = snapshot.states.get(row.rule_id)
            state = DEFAULT_STATE if stored is None else stored.state.effective(now)
            rules.append(compiled.with_state(state))
        for rule_id in [r for r in self._compiled if r not in present]:
            del self._compiled[rule_id]
        for rule_id in [r for r in self.problems if r not in present]:
            del self.problems[rule_id]
            if rule_id not in self._known_defs:  # else the tail still needs it
                self._reported.pop(rule_id, None)
        return rules

    def cached_rules(self) -> list[CompiledRule]:
        """The rules as this process last saw them (loaded or announced), no database read."""
        now = utcnow()
        rules = []
        for rule_id, revision in sorted(self._known_defs.items()):
            cached = self._compiled.get(rule_id)
            if cached is None or cached[0] != revision:
                continue
            stored = self._known_states.get(rule_id)
            state = DEFAULT_STATE if stored is None else stored.state.effective(now)
            rules.append(cached[1].with_state(state))
        return rules

    async def get_state(self, rule_id: str) -> RuleState:
        """The stored state of `rule_id`; never raises.

        When the database cannot be read, the state this store last knew for the rule
        (loaded or announced; expired counts as default) is returned, or `RuleState()`,
        and the outage is logged once. An expired state found here is reverted; if the
        revert fails, the default state is still returned and the expiry timer retries.
        """
        try:
            validate_rule_id(rule_id)
        except InvalidRuleId:
            return DEFAULT_STATE
        try:
            stored = await self.repo.read_state(rule_id)
        except Exception as exc:
            self._read_outage.failed(exc, "serving the last known states and rules")
            known = self._known_states.get(rule_id)
            return DEFAULT_STATE if known is None else known.state.effective()
        self._read_outage.recovered()
        state = DEFAULT_STATE if stored is None else stored.state
        if state.expires_at is None or not state.is_expired():
            return state
        try:
            await self._expire(rule_id, state.expires_at)
        except Exception as exc:
            log.debug("reverting the expired state of %s on read failed (the expiry timer "
                      "retries): %s: %s", rule_id, type(exc).__name__, exc)
            if self._expiry.armed().get(rule_id) != state.expires_at:
                self._expiry.schedule(rule_id, state.expires_at)
        return DEFAULT_STATE

    async def read_state(self, rule_id: str) -> RuleState:
        """The state of `rule_id` as stored now (an expired one counts as default).

        Unlike `get_state`, it never answers from this store's view: it raises
        `StoreError` when the database cannot be read (and `InvalidRuleId`). For
        operator tools, which must report an outage rather than a possibly stale state.
        """
        stored = await self.repo.read_state(validate_rule_id(rule_id))
        return DEFAULT_STATE if stored is None else stored.state.effective()

    async def _read_state(self, rule_id: str) -> RuleState:
        stored = await self.repo.read_state(rule_id)
        return DEFAULT_STATE if stored is None else stored.state

    async def _has_state(self, rule_id: str) -> bool:
        return True  # `_write_state` answers atomically: a clear is a conditional delete

    async def _write_state(self, rule_id: str, state: RuleState) -> bool:
        revision = await self.repo.write_state(rule_id, state)
        if revision is None:
            return False  # clearing what was not set: no write, nothing to announce
        return self._learn_state(rule_id, StoredState(revision, state))

    async def _revert_if_expired(self, rule_id: str, expires_at: datetime) -> bool:
        revision = await self.repo.revert_expired(rule_id, expires_at)
        if revision is None:
            return False  # not there any more, or another process reverted it first
        return self._learn_state(rule_id, StoredState(revision, DEFAULT_STATE))

    async def list_states(self) -> dict[str, RuleState]:
        now = utcnow()
        return {rule_id: stored.state
                for rule_id, stored in sorted((await self.repo.read_states()).items())
                if not stored.state.is_expired(now)}

    # definitions ------------------------------------------------------------------

    async def upsert_rule(self, compiled: CompiledRule, *, source_path: str | None,
                          updated_by: str | None) -> bool:
        """Store a rule's definition (its exact YAML); False when the row was identical."""
        return await self._upsert(compiled, source_path=source_path, updated_by=updated_by)

    async def delete_rule(self, rule_id: str) -> bool:
        """Remove a rule's definition (an operator state on it stays); False if unknown."""
        return await self._delete(rule_id)

    async def _upsert(self, compiled: CompiledRule, *, source_path: str | None,
                      updated_by: str | None, fence: Fence | None = None) -> bool:
        rule_id = validate_rule_id(compiled.rule_id)
        if not compiled.source_yaml:
            raise ValueError(f"rule {rule_id} has no source_yaml to store")
        written = await self.repo.upsert_rule(
            rule_id, compiled.rule_version, compiled.source_yaml,
            source_path=source_path, updated_by=updated_by, fence=fence)
        if written is None:
            return False
        base = replace(compiled, state=DEFAULT_STATE,
                       source_path=source_path or _row_source(rule_id))
        self._compiled[rule_id] = (written.revision, base)
        self.problems.pop(rule_id, None)
        self._reported.pop(rule_id, None)
        if self._known_defs.get(rule_id, 0) < written.revision:
            self._known_defs[rule_id] = written.revision
            self.definition_changed(base.with_state(written.state.effective()))
        return True

    async def _delete(self, rule_id: str, fence: Fence | None = None) -> bool:
        validate_rule_id(rule_id)
        revision = await self.repo.delete_rule(rule_id, fence=fence)
        if revision is None:
            return False
        self._compiled.pop(rule_id, None)
        self.problems.pop(rule_id, None)
        if rule_id in self._known_defs:
            was_live = not self._is_broken(rule_id, self._known_defs.pop(rule_id))
            if was_live:
                self.rule_deleted(rule_id)
        self._reported.pop(rule_id, None)
        return True

    # the announced view -------------------------------------------------------------

    async def _ensure_view(self, snapshot: Snapshot | None = None) -> None:
        """Take the view the tail starts from: the first snapshot this store reads."""
        if self._watermark is not None:
            return
        async with self._view_lock:
            if self._watermark is None:
                self._adopt(snapshot or await self.repo.snapshot())

    def _adopt(self, snapshot: Snapshot) -> None:
        self._watermark = self.stats.watermark = snapshot.revision
        self._identity = snapshot.identity
        self._known_defs = {row.rule_id: row.revision for row in snapshot.rules}
        self._known_states = dict(snapshot.states)
        armed = self._expiry.armed()
        for rule_id in armed:
            if rule_id not in snapshot.states:
                self._expiry.schedule(rule_id, None)
        self.arm_expiry({rule_id: stored.state for rule_id, stored in snapshot.states.items()})

    def _learn_state(self, rule_id: str, stored: StoredState) -> bool:
        """Record a state this process wrote; False if the tail announced it already."""
        known = self._known_states.get(rule_id)
        if known is not None and known.revision >= stored.revision:
            return False
        self._known_states[rule_id] = stored
        return True

    def _is_broken(self, rule_id: str, revision: int) -> bool:
        """Whether revision `revision` of `rule_id` failed to compile (and was reported)."""
        return self._reported.get(rule_id) == revision

    def _compile(self, row: StoredRule) -> CompiledRule | None:
        cached = self._compiled.get(row.rule_id)
        if cached is not None and cached[0] == row.revision:
            return cached[1]
        try:
            compiled = compile_rule(row.yaml_content, source=row.source_path or
                                    _row_source(row.rule_id), expected_rule_id=row.rule_id)
        except RuleSetError as exc:
            self.problems[row.rule_id] = exc.errors
            self._compiled.pop(row.rule_id, None)
            if self._reported.get(row.rule_id) != row.revision:
                self._reported[row.rule_id] = row.revision
                for error in exc.errors:
                    log.error("stored rule %s (revision %d) skipped: %s",
                              row.rule_id, row.revision, error)
            return None
        self.problems.pop(row.rule_id, None)
        self._reported.pop(row.rule_id, None)
        self._compiled[row.rule_id] = (row.revision, compiled)
        return compiled

    # worker: following the database ---------------------------------------------------

    async def tail_db(self, poll_interval: float = TAIL_POLL_INTERVAL, *,
                      listen: bool = True) -> None:
        """Announce every change other processes make, until cancelled.

        Starts from the view of this store's first `load_compiled` (or takes one now),
        so no old history is replayed. Polls run on a fixed cadence (each one due
        `poll_interval` after the previous one was due; slots missed while a poll ran
        long are skipped), and each issues one cheap query (the revision row); only when
        it moved are the change-log entries past the watermark read. A watermark older
        than the retained log announces a `resync`. Database errors are logged and
        counted (`stats.poll_errors`), retried with a backoff capped at
        `poll_interval`, and the last good rules stay. On PostgreSQL a LISTEN connection
        wakes the tail as soon as a write commits: the notified revision is a hint, read
        straight from the change log (one statement), and one not past the watermark
        does nothing (`listen=False`: poll only, e.g. behind a pooler in transaction
        mode, which cannot carry LISTEN).
        """
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        wakeup = _Wakeup()
        listener: asyncio.Task[None] | None = None
        if listen and self.repo.dialect == "postgresql":
            listener = asyncio.get_running_loop().create_task(
                self._listen(wakeup), name="decnet-ttp-listen")
        loop = asyncio.get_running_loop()
        due = loop.time()  # the first poll now
        timed_out = True
        failures = 0
        try:
            while True:
                catch_up, hint = wakeup.catch_up, wakeup.revision
                wakeup.catch_up, wakeup.revision = False, 0
                wakeup.event.clear()
                started = loop.time()
                slot = timed_out or started >= due  # a poll of the cadence (not a wake-up)
                full = slot or catch_up
                try:
                    async with asyncio.timeout(max(TAIL_QUERY_TIMEOUT, 2 * poll_interval)):
                        await self.repo.connect()
                        await self._ensure_view()
                        if full:
                            await self.poll_once()
                        elif self._watermark is not None and hint > self._watermark:
                            await self._follow_notification(hint)
                except asyncio.CancelledError:
                    raise
                except DatabaseFileChanged as exc:
                    failures += 1
                    self.stats.poll_errors += 1
                    if self.stats.database_problem is None:
                        log.error("%s; keeping the last good rules until it is back", exc)
                    self.stats.database_problem = str(exc)
                    due = loop.time() + min(poll_interval, 0.05 * 2 ** (failures - 1))
                except Exception as exc:
                    failures += 1
                    self.stats.poll_errors += 1
                    level = logging.WARNING if failures == 1 else logging.DEBUG
                    log.log(level, "rule database poll failed (%d in a row), keeping the "
                            "last good rules: %s: %s", failures, type(exc).__name__, exc)
                    due = loop.time() + min(poll_interval, 0.05 * 2 ** (failures - 1))
                else:
                    self.stats.database_problem = None
                    if failures:
                        log.warning("rule database reachable again after %d failed poll(s); "
                                    "caught up to revision %s", failures, self._watermark)
                        failures = 0
                        due, slot = started, True
                    if slot:  # the next slot after this one (slots missed are skipped)
                        missed = max(0, math.floor((started - due) / poll_interval))
                        due += poll_interval * (missed + 1)
                timed_out = False
                try:
                    await asyncio.wait_for(wakeup.event.wait(), max(0.0, due - loop.time()))
                except TimeoutError:
                    timed_out = True
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def poll_once(self) -> int:
        """One poll: read the revision and apply what moved; how many changes it applied."""
        await self._ensure_view()
        current = await self.repo.head()
        head = current.revision
        self.stats.polls += 1
        applied = 0
        assert self._watermark is not None
        if current.identity != self._identity:
            log.warning("the rule database was replaced (identity %s, was %s); reloading "
                        "everything from the new one", current.identity, self._identity)
            self.stats.database_replacements += 1
            await self._resync()
            head = self._watermark
        elif head < self._watermark:
            log.warning("rule database revision went back from %d to %d (restored or "
                        "recreated?); reloading everything", self._watermark, head)
            await self._resync()
            head = self._watermark
        while self._watermark < head:
            entries = await self.repo.changes_since(self._watermark, head, CHANGE_LOG_BATCH)
            if not entries or entries[0].revision != self._watermark + 1:
                log.warning("change log no longer reaches back to revision %d; reloading "
                            "everything", self._watermark + 1)
                await self._resync()
                break
            for entry in entries:
                applied += self._apply(entry)
            self._watermark = self.stats.watermark = entries[-1].revision
        self.stats.last_sync = time.monotonic()
        return applied

    async def _follow_notification(self, revision: int) -> int:
        """Apply the change log up to a notified `revision`, without reading the revision row.

        The notification is only a hint: one not past the watermark does nothing, and
        when the log does not continue the watermark (pruned, or not visible yet) the
        revision row decides, as a poll (`poll_once`) does.
        """
        await self._ensure_view()
        assert self._watermark is not None
        applied = 0
        while self._watermark < revision:
            entries = await self.repo.changes_since(self._watermark, revision,
                                                    CHANGE_LOG_BATCH)
            if not entries or entries[0].revision != self._watermark + 1:
                return applied + await self.poll_once()
            for entry in entries:
                applied += self._apply(entry)
            self._watermark = self.stats.watermark = entries[-1].revision
        self.stats.last_sync = time.monotonic()
        return applied

    def _apply(self, entry: LogEntry) -> int:
        rule_id = entry.rule_id
        if entry.change_kind == DEFINITION_KIND:
            row = entry.rule
            known = self._known_defs.get(rule_id)
            if row is None or row.revision <= (known or 0):
                return 0
            was_live = known is not None and not self._is_broken(rule_id, known)
            compiled = self._compile(row)
            self._known_defs[rule_id] = row.revision
            if compiled is None:
                # A revision that does not compile makes the rule absent, as it is for
                # `load_compiled`: subscribers that had it drop it (logged, in `problems`).
                if not was_live:
                    return 0
                self.rule_deleted(rule_id)
            else:
                state = DEFAULT_STATE if entry.state is None else entry.state.state.effective()
                self.definition_changed(compiled.with_state(state))
        elif entry.change_kind == DELETED_KIND:
            if entry.rule is not None and entry.rule.revision > entry.revision:
                return 0  # deleted, then created again: its definition entry follows
            known = self._known_defs.get(rule_id)
            if known is None or known > entry.revision:
                return 0
            was_live = not self._is_broken(rule_id, known)
            del self._known_defs[rule_id]
            self._compiled.pop(rule_id, None)
            self.problems.pop(rule_id, None)
            self._reported.pop(rule_id, None)
            if not was_live:
                return 0  # its last revision did not compile: announced absent already
            self.rule_deleted(rule_id)
        else:
            known_state = self._known_states.get(rule_id)
            if entry.state is not None:
                if known_state is not None and known_state.revision >= entry.state.revision:
                    return 0
                self._known_states[rule_id] = entry.state
                self.state_changed(rule_id, entry.state.state)
            else:
                if known_state is None or known_state.revision >= entry.revision:
                    return 0
                self._known_states[rule_id] = StoredState(entry.revision, DEFAULT_STATE)
                if known_state.state.is_default:
                    return 0
                self.state_changed(rule_id, DEFAULT_STATE)
        self.stats.changes_applied += 1
        return 1

    async def _resync(self) -> None:
        self._adopt(await self.repo.snapshot())
        self.stats.resyncs += 1
        self._announcer.announce(RuleChange(RESYNC, "*", None))

    async def _listen(self, wakeup: _Wakeup) -> None:
        """PostgreSQL: LISTEN on a connection of its own; every notification wakes the tail.

        The payload (the revision the write committed) is kept as a hint; a payload that
        is not a revision, and every (re)connect, asks for a full poll instead.
        """
        import asyncpg

        failures = 0
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self.repo.asyncpg_dsn(),
                                             timeout=DB_CONNECT_TIMEOUT)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())

                def notified(_conn: object, _pid: object, _channel: object,
                             payload: object) -> None:
                    self.stats.notifications += 1
                    revision = notified_revision(payload)
                    if revision is None:
                        wakeup.catch_up = True
                    else:
                        wakeup.revision = max(wakeup.revision, revision)
                    wakeup.event.set()

                await conn.add_listener(NOTIFY_CHANNEL, notified)
                if failures:
                    log.info("LISTEN %s connected again", NOTIFY_CHANNEL)
                failures = 0
                wakeup.catch_up = True  # whatever was missed while not listening
                wakeup.event.set()
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), LISTEN_KEEPALIVE)
                    except TimeoutError:
                        await conn.execute("SELECT 1", timeout=DB_CONNECT_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "LISTEN %s failed (polling continues): %s: %s",
                        NOTIFY_CHANNEL, type(exc).__name__, exc)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))

    # master: projecting a rules directory ----------------------------------------------

    async def sync_from_filesystem(
        self, fs_store: FilesystemRuleStore, *, updated_by: str = "master",
        lease_ttl: float = MASTER_LEASE_TTL,
        on_role: Callable[[MasterRole], None] | None = None,
        on_reconciled: Callable[[int, int], None] | None = None,
    ) -> None:
        """Keep `ttp_rule` equal to `fs_store`'s directory, until cancelled.

        Only the holder of the master lease writes. A second master stands by (logging
        who holds the lease) and takes over when the holder releases it or its heartbeat
        stops for `lease_ttl` seconds; a master that lost the lease has its writes
        refused and goes back to standing by. Once holding the lease: the whole
        directory is reconciled (new, changed and deleted rules; a file that exists but
        does not compile keeps its row), then each definition change and deletion of
        `fs_store` is projected. State changes of the filesystem store are not.

        A database failure never ends this loop: the master stands by (`master_role`
        "standby"), retries with a backoff capped at `lease_ttl / 4` (the outage logged
        once, each retry at DEBUG), then takes the lease again and reconciles the whole
        directory, so edits made while the database was away land.

        `on_role(role)` is called whenever `master_role` changes ("standby", "active",
        "idle"); `on_reconciled(written, deleted)` after each whole-directory reconcile.
        """
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._on_role = on_role
        self._on_reconciled = on_reconciled
        outage = _Outage("master")
        try:
            while True:
                fence = await self._acquire_lease(holder, lease_ttl, outage)
                failure: BaseException | None = None
                try:
                    await self._run_master(fs_store, fence, updated_by, lease_ttl, outage)
                except MasterLeaseLost as exc:
                    log.error("master lease lost (%s); standing by", exc)
                    self._set_role("idle")
                except _DB_FAILURES as exc:
                    failure = exc
                    self._set_role("standby")
                finally:
                    with contextlib.suppress(Exception):
                        await self.repo.release_lease(fence)
                if failure is not None:
                    outage.failed(failure, "standing by; the whole directory is reconciled "
                                           "once it is back")
                    await asyncio.sleep(outage.backoff(lease_ttl / 4))
        finally:
            self._set_role("idle")
            self._on_role = self._on_reconciled = None

    def _set_role(self, role: MasterRole) -> None:
        if role == self.master_role:
            return
        self.master_role = role
        if self._on_role is not None:
            try:
                self._on_role(role)
            except Exception:
                log.exception("on_role callback failed")

    async def _acquire_lease(self, holder: str, ttl: float, outage: _Outage) -> Fence:
        announced: str | None = None
        seen: LeaseInfo | None = None
        seen_since = time.monotonic()
        while True:
            try:
                lease = await self.repo.read_lease()
                stale = False
                if lease.holder is not None:
                    if seen is None or (lease.holder, lease.token, lease.heartbeat) != \
                            (seen.holder, seen.token, seen.heartbeat):
                        seen, seen_since = lease, time.monotonic()
                    stale = time.monotonic() - seen_since >= ttl or _holder_is_dead(lease.holder)
                if lease.holder is None or lease.holder == holder or stale:
                    fence = await self.repo.acquire_lease(holder, lease)
                    if fence is not None:
                        if lease.holder is not None and lease.holder != holder:
                            log.warning("took over the master lease from %s (no heartbeat "
                                        "for %.0f s)", lease.holder, time.monotonic() -
                                        seen_since)
                        log.info("master lease acquired by %s", holder)
                        self._set_role("active")
                        return fence
                    continue
                outage.recovered()  # reachable: standing by behind another master now
                if announced != lease.holder:
                    announced = lease.holder
                    self._set_role("standby")
                    since = lease.acquired_at.isoformat(timespec="seconds") \
                        if lease.acquired_at else "?"
                    log.warning("another master holds the lease: %s (since %s); standing by "
                                "until it stops or misses heartbeats for %.0f s",
                                lease.holder, since, ttl)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_role("standby")
                outage.failed(exc, "standing by")
                await asyncio.sleep(outage.backoff(ttl / 4))
                continue
            await asyncio.sleep(ttl / 4)

    async def _run_master(self, fs_store: FilesystemRuleStore, fence: Fence,
                          updated_by: str, ttl: float, outage: _Outage) -> None:
        lost = asyncio.Event()
        heartbeat = asyncio.get_running_loop().create_task(
            self._heartbeat(fence, ttl, lost), name="decnet-ttp-lease")
        changes = fs_store.subscribe_changes()
        next_change: asyncio.Task[RuleChange] | None = None
        lost_wait: asyncio.Task[bool] | None = None
        try:
            await self.reconcile(fs_store, updated_by=updated_by, fence=fence)
            outage.recovered("; the rules directory is reconciled")
            lost_wait = asyncio.get_running_loop().create_task(lost.wait())
            while True:
                next_change = asyncio.get_running_loop().create_task(_next(changes))
                await asyncio.wait({next_change, lost_wait},
                                   return_when=asyncio.FIRST_COMPLETED)
                if lost.is_set():
                    raise MasterLeaseLost(f"{fence.holder} missed its heartbeats")
                change, next_change = next_change.result(), None
                await self._project(fs_store, change, updated_by, fence)
        finally:
            for task in (next_change, lost_wait, heartbeat):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await task
            await changes.aclose()  # type: ignore[attr-defined]

    async def _heartbeat(self, fence: Fence, ttl: float, lost: asyncio.Event) -> None:
        last_ok = time.monotonic()
        failures = 0
        while True:
            await asyncio.sleep(ttl / 4)
            try:
                if not await self.repo.heartbeat_lease(fence):
                    log.error("master lease of %s was taken over", fence.holder)
                    lost.set()
                    return
                last_ok = time.monotonic()
                failures = 0
            except Exception as exc:
                failures += 1
                log.log(logging.WARNING if failures == 1 else logging.DEBUG,
                        "master lease heartbeat failed (%d in a row): %s: %s", failures,
                        type(exc).__name__, exc)
                if time.monotonic() - last_ok >= ttl:
                    lost.set()
                    return

    async def _project(self, fs_store: FilesystemRuleStore, change: RuleChange,
                       updated_by: str, fence: Fence) -> None:
        try:
            if change.change_kind == DEFINITION and isinstance(change.new_value, CompiledRule):
                rule = change.new_value
                await self._upsert(rule, source_path=_file_name(rule),
                                   updated_by=updated_by, fence=fence)
            elif change.change_kind == DELETED:
                await self._delete(change.rule_id, fence=fence)
            elif change.change_kind == RESYNC:
                await self.reconcile(fs_store, updated_by=updated_by, fence=fence)
        except _DB_FAILURES:
            raise  # the master stands by, then reconciles in full (`sync_from_filesystem`)
        except Exception:
            log.exception("projecting %s of %s onto the database failed; reconciling",
                          change.change_kind, change.rule_id)
            await self.reconcile(fs_store, updated_by=updated_by, fence=fence)

    async def reconcile(self, fs_store: FilesystemRuleStore, *, updated_by: str = "master",
                        fence: Fence | None = None) -> tuple[int, int]:
        """Make `ttp_rule` equal the directory once: (rules written, rules deleted).

        Unchanged files cause no write. A rule whose file exists but does not compile
        (listed in `fs_store.problems`) keeps its row, whatever its last good version.
        """
        wanted = {rule.rule_id: rule for rule in await fs_store.load_compiled()}
        broken = {rule_id_of_path(name) for name in fs_store.problems}
        stored = await self.repo.rule_contents()
        written = deleted = 0
        for rule_id, rule in sorted(wanted.items()):
            if stored.get(rule_id) == (rule.rule_version, rule.source_yaml):
                continue
            if await self._upsert(rule, source_path=_file_name(rule), updated_by=updated_by,
                                  fence=fence):
                written += 1
        for rule_id in sorted(set(stored) - set(wanted)):
            if rule_id in broken:
                log.warning("rule %s: its file does not compile; the stored version stays",
                            rule_id)
                continue
            if await self._delete(rule_id, fence=fence):
                deleted += 1
        log.info("reconciled %d rule file(s) with the database: %d written, %d deleted",
                 len(wanted), written, deleted)
        if self._on_reconciled is not None:
            try:
                self._on_reconciled(written, deleted)
            except Exception:
                log.exception("on_reconciled callback failed")
        return written, deleted


def notified_revision(payload: object) -> int | None:
    """The revision a NOTIFY payload names, or None when it names none a revision column
    can hold (anyone allowed to connect can NOTIFY on the channel: the payload is a hint)."""
    text = str(payload)
    if not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    revision = int(text)
    return revision if 0 < revision <= MAX_REVISION else None


async def _next(changes: AsyncIterator[RuleChange]) -> RuleChange:
    return await anext(changes)


def _row_source(rule_id: str) -> str:
    return f"ttp_rule/{rule_id}"


def _file_name(rule: CompiledRule) -> str:
    """The rule's file name (not the master's path: the row is read on other hosts)."""
    return os.path.basename(rule.source_path) if rule.source_path else f"{rule.rule_id}.yaml"


def _holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process is gone (a master killed and restarted)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def tail_db(store: DatabaseRuleStore, poll_interval: float = TAIL_POLL_INTERVAL) -> None:
    """`store.tail_db(poll_interval)`: follow the database until cancelled."""
    await store.tail_db(poll_interval)


async def sync_from_filesystem(store: DatabaseRuleStore, fs_store: FilesystemRuleStore, *,
                               updated_by: str = "master") -> None:
    """`store.sync_from_filesystem(fs_store)`: the master's loop, until cancelled."""
    await store.sync_from_filesystem(fs_store, updated_by=updated_by)
