"""`DatabaseRuleStore`: rules and operator state in SQL, shared by a swarm.

The store holds this process's view of the database: the compile cache and, by
revision, the definitions and states it has announced. Propagation is by revision
number, never by timestamp: every write takes the next revision and appends one
change-log entry (see `decnet.ttp.store.sql.repository`); the worker's `Tail` reads the
entries past its watermark and hands each to `apply_entry`; the master's
`MasterProjection` writes definitions through `write_definition`/`remove_definition`.

Longer than most modules on purpose: the contract, the definitions and the announced
view are one concept — what this process believes the database holds, by revision —
and the invariants that tie them (a broken revision announced absent once, a write
announced once whether this process or its tail sees it first) read best in one place.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from decnet.bus.base import Bus
from decnet.ttp.constants import (
    EXPIRY_RETRY_INITIAL,
    EXPIRY_RETRY_MAX,
    MASTER_LEASE_TTL,
    TAIL_POLL_INTERVAL,
)
from decnet.ttp.errors import InvalidRuleId, RuleError, RuleSetError, StoreError
from decnet.ttp.loops import Outage, cancel_and_wait
from decnet.ttp.rules.compiled import CompiledRule
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.stored_form import StoredFormError, compile_form, compiler_id, derive_form
from decnet.ttp.store.backend import BaseRuleStore
from decnet.ttp.store.database.master import MasterProjection, MasterRole
from decnet.ttp.store.database.tail import Tail, TailStats
from decnet.ttp.store.sql.repository import RuleRepository
from decnet.ttp.store.sql.rows import (
    Fence,
    LogEntry,
    Snapshot,
    StoredRule,
    StoredScoped,
    StoredState,
)
from decnet.vocabulary import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    SCOPED,
    Audit,
    Clock,
    HistoryEntry,
    RuleChange,
    RuleState,
    Scope,
    ScopedState,
    utcnow,
    validate_rule_id,
)

if TYPE_CHECKING:
    from decnet.ttp.store.database.feed import ChangeFeed
    from decnet.ttp.store.impl.filesystem import FilesystemRuleStore

log = logging.getLogger(__name__)


class DatabaseRuleStore(BaseRuleStore):
    """Rules (`ttp_rule`) and operator state (`ttp_rule_state`) in a database.

    `repo` is a `RuleRepository` or a database URL; None means a private in-memory
    SQLite database. `clock` stamps `set_at` and the informational time columns;
    `expiry_retry` see `BaseRuleStore`. A
    stored row whose YAML does not compile makes its rule absent: it is logged with its
    rule id, listed in `problems` and left out of `load_compiled`; a tail that receives
    such a revision of a rule it had announces the rule deleted. The other rules keep
    working.
    """

    def __init__(self, repo: RuleRepository | str | None = None, *,
                 bus: Bus | None = None, clock: Clock = utcnow,
                 expiry_retry: tuple[float, float] = (EXPIRY_RETRY_INITIAL,
                                                      EXPIRY_RETRY_MAX)) -> None:
        super().__init__(bus=bus, clock=clock, expiry_retry=expiry_retry)
        self._owns_repo = not isinstance(repo, RuleRepository)
        self.repo = repo if isinstance(repo, RuleRepository) else \
            RuleRepository(repo, clock=clock)
        #: rule_id -> compiled rule with the default state, and the revision it is of:
        #: the compile cache (two dicts: a tuple per rule would cost more than the second).
        self._compiled: dict[str, CompiledRule] = {}
        self._compiled_at: dict[str, int] = {}
        #: rule_id -> the revision whose stored form was refused (logged once).
        self._form_refused: dict[str, int] = {}
        # What this process has announced (or loaded before following), by revision.
        self._known_defs: dict[str, int] = {}
        self._known_states: dict[str, StoredState] = {}
        self._known_scoped: dict[str, StoredScoped] = {}
        self._has_view = False
        #: (identity, revision) of the snapshot the view (and the tail) started from.
        self._view_start: tuple[str, int] | None = None
        self._view_lock = asyncio.Lock()
        #: rule_id -> the errors of its stored row (skipped until fixed).
        self.problems: dict[str, tuple[RuleError, ...]] = {}
        self._reported: dict[str, int] = {}
        #: Follows the database (`start_tail`, `tail_db`); its `stats` feed /metrics.
        self.tail = Tail(self)
        self._tail_task: asyncio.Task[None] | None = None
        self._master: MasterProjection | None = None
        self._started = False
        #: Failed reads served from this store's view (`get_state`, `load_compiled`).
        self._read_outage = Outage(log, "reading the rule database")

    @property
    def stats(self) -> TailStats:
        """The tail's counters (what a worker's /metrics reads)."""
        return self.tail.stats

    @property
    def sync_stats(self) -> TailStats:
        return self.tail.stats

    @property
    def statements_issued(self) -> int:
        return self.repo.statements

    @property
    def master_role(self) -> MasterRole:
        """"active" while this process projects a directory holding the lease,
        "standby" while it waits for it, else "idle"."""
        return "idle" if self._master is None else self._master.role

    # lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the schema, take the initial view and arm expiry timers."""
        if self._started:
            return
        await self.repo.connect()
        await self.ensure_view()
        self._started = True

    def start_tail(self, poll_interval: float = TAIL_POLL_INTERVAL, *,
                   listen: bool = True, feed: ChangeFeed | None = None,
                   feed_poll_interval: float | None = None) -> asyncio.Task[None]:
        """Run `tail_db(...)` in the background until `stop()`."""
        if self._tail_task is None or self._tail_task.done():
            self._tail_task = asyncio.get_running_loop().create_task(
                self.tail.run(poll_interval, listen=listen, feed=feed,
                              feed_poll_interval=feed_poll_interval), name="decnet-ttp-tail")
        return self._tail_task

    async def tail_db(self, poll_interval: float = TAIL_POLL_INTERVAL, *,
                      listen: bool = True, feed: ChangeFeed | None = None,
                      feed_poll_interval: float | None = None) -> None:
        """Follow the database until cancelled (see `Tail.run`); with a NATS `feed`,
        changes arrive pushed and the database is the safety net."""
        await self.tail.run(poll_interval, listen=listen, feed=feed,
                            feed_poll_interval=feed_poll_interval)

    async def poll_once(self) -> int:
        """One poll of the tail; how many changes it applied (see `Tail.poll_once`)."""
        return await self.tail.poll_once()

    async def stop(self) -> None:
        task, self._tail_task = self._tail_task, None
        await cancel_and_wait(task, logger=log)
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
            snapshot = await self.repo.snapshot(compiler_id())
        except StoreError as exc:
            if not self._has_view:
                raise
            self._read_outage.failed(exc, "serving the last good rules and states")
            return self.cached_rules()
        self._read_outage.recovered()
        await self.ensure_view(snapshot)
        while self._view_start is not None and snapshot.identity == self._view_start[0] \
                and snapshot.revision < self._view_start[1]:
            # The tail took its view from a newer read than this one: what lies between
            # would never be announced, so these rules must be at least as new as it.
            snapshot = await self.repo.snapshot(compiler_id())
        now = self.clock()
        present = set()
        rules = []
        for row in snapshot.rules:
            present.add(row.rule_id)
            compiled = self._cached(row) or self._from_form(row) or self._compile(row)
            if compiled is None:
                continue
            stored = snapshot.states.get(row.rule_id)
            state = DEFAULT_STATE if stored is None else stored.state.effective(now)
            scoped = (snapshot.scoped or {}).get(row.rule_id)
            rules.append(compiled.with_state(state).with_scoped(_live(scoped, now)))
        for rule_id in [r for r in self._compiled if r not in present]:
            self._forget(rule_id)
        for rule_id in [r for r in self._form_refused if r not in present]:
            del self._form_refused[rule_id]
        for rule_id in [r for r in self.problems if r not in present]:
            del self.problems[rule_id]
            if rule_id not in self._known_defs:  # else the tail still needs it
                self._reported.pop(rule_id, None)
        return rules

    async def with_source(self, rule: CompiledRule) -> CompiledRule:
        """`rule` with its YAML text, read from its row when this store did not keep it
        (a rule shown to an operator). Unchanged when the row holds another text now."""
        if rule.source_yaml or rule.source_digest is None:
            return rule
        text = (await self.repo.rule_texts([rule.rule_id])).get(rule.rule_id)
        if text is None or hashlib.sha256(text.encode("utf-8")).digest() != rule.source_digest:
            return rule
        return replace(rule, source_yaml=text)

    def cached_rules(self) -> list[CompiledRule]:
        """The rules as this process last saw them (loaded or announced), no database read."""
        now = self.clock()
        rules = []
        for rule_id, revision in sorted(self._known_defs.items()):
            cached = self._compiled.get(rule_id)
            if cached is None or self._compiled_at.get(rule_id) != revision:
                continue
            stored = self._known_states.get(rule_id)
            state = DEFAULT_STATE if stored is None else stored.state.effective(now)
            rules.append(cached.with_state(state).with_scoped(
                _live(self._known_scoped.get(rule_id), now)))
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
        except StoreError as exc:
            self._read_outage.failed(exc, "serving the last known states and rules")
            known = self._known_states.get(rule_id)
            return DEFAULT_STATE if known is None else known.state.effective(self.clock())
        self._read_outage.recovered()
        state = DEFAULT_STATE if stored is None else stored.state
        if state.expires_at is None or not state.is_expired(self.clock()):
            return state
        try:
            await self._expire(rule_id, state.expires_at)
        except StoreError as exc:
            log.debug("reverting the expired state of %s on read failed (the expiry timer "
                      "retries): %s", rule_id, exc)
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
        return DEFAULT_STATE if stored is None else stored.state.effective(self.clock())

    async def rule_exists(self, rule_id: str) -> bool:
        """Whether a definition of `rule_id` is stored (a state may name a rule that is not)."""
        return await self.repo.rule_exists(validate_rule_id(rule_id))

    async def _read_state(self, rule_id: str) -> RuleState:
        stored = await self.repo.read_state(rule_id)
        return DEFAULT_STATE if stored is None else stored.state

    async def _has_state(self, rule_id: str) -> bool:
        return True  # `_write_state` answers atomically: a clear is a conditional delete

    async def _write_state(self, rule_id: str, state: RuleState, audit: Audit) -> bool:
        revision = await self.repo.write_state(rule_id, state, audit)
        if revision is None:
            return False  # clearing what was not set: no write, nothing to announce
        return self._learn_state(rule_id, StoredState(revision, state))

    async def _revert_if_expired(self, rule_id: str, expires_at: datetime,
                                 audit: Audit) -> bool:
        revision = await self.repo.revert_expired(rule_id, expires_at, audit)
        if revision is None:
            return False  # not there any more, or another process reverted it first
        return self._learn_state(rule_id, StoredState(revision, DEFAULT_STATE))

    async def _read_scoped(self, rule_id: str) -> dict[str, ScopedState]:
        stored = await self.repo.read_scoped(rule_id)
        return {item.scope.key: item for item in stored.states}

    async def _write_scoped(self, rule_id: str, scope: Scope, state: RuleState,
                            audit: Audit) -> tuple[ScopedState, ...] | None:
        revision = await self.repo.write_scoped(rule_id, scope.key, state, audit)
        return None if revision is None else await self._learn_scoped(rule_id, revision)

    async def _revert_scoped_if_expired(self, rule_id: str, scope_key: str,
                                        expires_at: datetime,
                                        audit: Audit) -> tuple[ScopedState, ...] | None:
        revision = await self.repo.revert_scoped_expired(rule_id, scope_key, expires_at,
                                                         audit)
        return None if revision is None else await self._learn_scoped(rule_id, revision)

    async def _learn_scoped(self, rule_id: str, revision: int) -> tuple[ScopedState, ...] | None:
        """After this process wrote `revision`: the rule's scoped states to announce, or
        None when the tail announced that revision (or a newer one) already."""
        stored = await self.repo.read_scoped(rule_id)
        seen = StoredScoped(max(revision, stored.revision), stored.states)
        known = self._known_scoped.get(rule_id)
        if known is not None and known.revision >= seen.revision:
            return None
        self._known_scoped[rule_id] = seen
        return _live(seen, self.clock())

    async def list_scoped_states(self) -> dict[str, tuple[ScopedState, ...]]:
        now = self.clock()
        found = {rule_id: _live(stored, now)
                 for rule_id, stored in sorted((await self.repo.read_all_scoped()).items())}
        return {rule_id: items for rule_id, items in found.items() if items}

    async def history(self, rule_id: str | None = None, *, since: datetime | None = None,
                      limit: int | None = None) -> list[HistoryEntry]:
        return await self.repo.read_history(rule_id, since=since, limit=limit)

    async def list_states(self) -> dict[str, RuleState]:
        now = self.clock()
        return {rule_id: stored.state
                for rule_id, stored in sorted((await self.repo.read_states()).items())
                if not stored.state.is_expired(now)}

    # definitions ------------------------------------------------------------------

    async def upsert_rule(self, compiled: CompiledRule, *, source_path: str | None,
                          updated_by: str | None) -> bool:
        """Store a rule's definition (its exact YAML); False when the row was identical."""
        return await self.write_definition(compiled, source_path=source_path,
                                           updated_by=updated_by)

    async def delete_rule(self, rule_id: str) -> bool:
        """Remove a rule's definition (an operator state on it stays); False if unknown."""
        return await self.remove_definition(rule_id)

    async def write_definition(self, compiled: CompiledRule, *, source_path: str | None,
                               updated_by: str | None, fence: Fence | None = None) -> bool:
        """`upsert_rule`, fenced by the master lease when `fence` is given."""
        rule_id = validate_rule_id(compiled.rule_id)
        text = compiled.source_yaml
        if not text:
            raise ValueError(f"rule {rule_id} has no source_yaml to store")
        form = derive_form(text, source=source_path or _row_source(rule_id), rule_id=rule_id)
        written = await self.repo.upsert_rule(
            rule_id, compiled.rule_version, text, source_path=source_path,
            updated_by=updated_by, fence=fence, compiled_form=form, compiled_by=compiler_id())
        if written is None:
            await self.repo.refresh_form(rule_id, compiled.rule_version, text,
                                         compiled_form=form, compiled_by=compiler_id(),
                                         fence=fence)
            return False
        base = replace(compiled, state=DEFAULT_STATE,
                       source_path=source_path or _row_source(rule_id), source_yaml="",
                       source_digest=hashlib.sha256(text.encode("utf-8")).digest())
        self._compiled[rule_id] = base
        self._compiled_at[rule_id] = written.revision
        self.problems.pop(rule_id, None)
        self._reported.pop(rule_id, None)
        if self._known_defs.get(rule_id, 0) < written.revision:
            self._known_defs[rule_id] = written.revision
            self.definition_changed(base.with_state(written.state.effective(self.clock()))
                                    .with_scoped(_live(self._known_scoped.get(rule_id),
                                                       self.clock())))
        return True

    async def remove_definition(self, rule_id: str, *, fence: Fence | None = None) -> bool:
        """`delete_rule`, fenced by the master lease when `fence` is given."""
        validate_rule_id(rule_id)
        revision = await self.repo.delete_rule(rule_id, fence=fence)
        if revision is None:
            return False
        self._forget(rule_id)
        self.problems.pop(rule_id, None)
        if rule_id in self._known_defs:
            was_live = not self._is_broken(rule_id, self._known_defs.pop(rule_id))
            if was_live:
                self.rule_deleted(rule_id)
        self._reported.pop(rule_id, None)
        return True

    # master: projecting a rules directory ----------------------------------------------

    async def sync_from_filesystem(
        self, fs_store: FilesystemRuleStore, *, updated_by: str = "master",
        lease_ttl: float = MASTER_LEASE_TTL,
        on_role: Callable[[MasterRole], None] | None = None,
        on_reconciled: Callable[[int, int], None] | None = None,
    ) -> None:
        """Keep `ttp_rule` equal to `fs_store`'s directory, until cancelled (see
        `MasterProjection.run`); `master_role` says where it stands."""
        master = self._master = MasterProjection(
            self, fs_store, updated_by=updated_by, lease_ttl=lease_ttl, on_role=on_role,
            on_reconciled=on_reconciled)
        try:
            await master.run()
        finally:
            if self._master is master:
                self._master = None

    async def reconcile(self, fs_store: FilesystemRuleStore, *, updated_by: str = "master",
                        fence: Fence | None = None) -> tuple[int, int]:
        """Make `ttp_rule` equal the directory once: (rules written, rules deleted)."""
        return await MasterProjection(self, fs_store, updated_by=updated_by).reconcile(
            fence=fence)

    # the announced view -------------------------------------------------------------

    async def ensure_view(self, snapshot: Snapshot | None = None) -> None:
        """Take the view the tail starts from: the first snapshot this store reads."""
        if self._has_view:
            return
        async with self._view_lock:
            if not self._has_view:
                self.adopt(snapshot or await self.repo.snapshot())

    def adopt(self, snapshot: Snapshot) -> None:
        """Make `snapshot` this store's whole view (start, resync); the tail follows from
        its revision."""
        self._has_view = True
        self._view_start = (snapshot.identity, snapshot.revision)
        self.tail.follow_from(snapshot.revision, snapshot.identity)
        self._known_defs = {row.rule_id: row.revision for row in snapshot.rules}
        self._known_states = dict(snapshot.states)
        self._known_scoped = dict(snapshot.scoped or {})
        self.arm_scoped_expiry({rule_id: stored.states
                                for rule_id, stored in self._known_scoped.items()})
        for rule_id in self._expiry.armed():
            if rule_id not in snapshot.states:
                self._expiry.schedule(rule_id, None)
        self.arm_expiry({rule_id: stored.state for rule_id, stored in snapshot.states.items()})

    def announce_resync(self) -> None:
        self._announcer.announce(RuleChange(RESYNC, "*", None))

    def apply_entry(self, entry: LogEntry) -> bool:
        """Apply one change-log entry to the view; whether it changed (and announced)
        anything."""
        rule_id = entry.rule_id
        if entry.change_kind is DEFINITION:
            return self._apply_definition(rule_id, entry.rule)
        if entry.change_kind is DELETED:
            return self._apply_deletion(entry)
        if entry.change_kind is SCOPED:
            return self._apply_scoped(entry)
        known_state = self._known_states.get(rule_id)
        if entry.state is not None:
            if known_state is not None and known_state.revision >= entry.state.revision:
                return False
            self._known_states[rule_id] = entry.state
            self.state_changed(rule_id, entry.state.state)
            return True
        if known_state is None or known_state.revision >= entry.revision:
            return False
        self._known_states[rule_id] = StoredState(entry.revision, DEFAULT_STATE)
        if known_state.state.is_default:
            return False
        self.state_changed(rule_id, DEFAULT_STATE)
        return True

    def _apply_scoped(self, entry: LogEntry) -> bool:
        stored = entry.scoped
        known = self._known_scoped.get(entry.rule_id)
        if stored is None or (known is not None and known.revision >= stored.revision):
            return False
        self._known_scoped[entry.rule_id] = stored
        if known is not None and known.states == stored.states:
            return False
        self.scoped_changed(entry.rule_id, _live(stored, self.clock()))
        return True

    def _apply_definition(self, rule_id: str, row: StoredRule | None) -> bool:
        known = self._known_defs.get(rule_id)
        if row is None or row.revision <= (known or 0):
            return False
        was_live = known is not None and not self._is_broken(rule_id, known)
        compiled = self._cached(row) or self._from_form(row) or self._compile(row)
        self._known_defs[rule_id] = row.revision
        if compiled is None:
            # A revision that does not compile makes the rule absent, as it is for
            # `load_compiled`: subscribers that had it drop it (logged, in `problems`).
            if not was_live:
                return False
            self.rule_deleted(rule_id)
            return True
        stored = self._known_states.get(rule_id)
        now = self.clock()
        state = DEFAULT_STATE if stored is None else stored.state.effective(now)
        self.definition_changed(compiled.with_state(state).with_scoped(
            _live(self._known_scoped.get(rule_id), now)))
        return True

    def _apply_deletion(self, entry: LogEntry) -> bool:
        rule_id = entry.rule_id
        if entry.rule is not None and entry.rule.revision > entry.revision:
            return False  # deleted, then created again: its definition entry follows
        known = self._known_defs.get(rule_id)
        if known is None or known > entry.revision:
            return False
        was_live = not self._is_broken(rule_id, known)
        del self._known_defs[rule_id]
        self._forget(rule_id)
        self.problems.pop(rule_id, None)
        self._reported.pop(rule_id, None)
        if not was_live:
            return False  # its last revision did not compile: announced absent already
        self.rule_deleted(rule_id)
        return True

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

    def _cached(self, row: StoredRule) -> CompiledRule | None:
        if self._compiled_at.get(row.rule_id) != row.revision:
            return None
        return self._compiled.get(row.rule_id)

    def _from_form(self, row: StoredRule) -> CompiledRule | None:
        """The rule from its stored form; None when the row has no form this process
        can use (the caller compiles the YAML: `_compile`)."""
        if row.compiled_form is None or row.compiled_by != compiler_id():
            return None
        try:
            compiled = compile_form(row.compiled_form, row.yaml_content,
                                    source=row.source_path or _row_source(row.rule_id),
                                    expected_rule_id=row.rule_id)
        except StoredFormError as exc:
            if self._form_refused.get(row.rule_id) != row.revision:
                self._form_refused[row.rule_id] = row.revision
                log.warning("stored rule %s (revision %d): its stored form is not usable "
                            "(%s); compiling its YAML", row.rule_id, row.revision, exc)
            return None
        self._remember(row, compiled)
        return compiled

    def _compile(self, row: StoredRule) -> CompiledRule | None:
        """The rule compiled from its YAML; None (reported once per revision, listed in
        `problems`) when it does not compile."""
        try:
            compiled = compile_rule(row.yaml_content,
                                    source=row.source_path or _row_source(row.rule_id),
                                    expected_rule_id=row.rule_id, keep_source=False)
        except RuleSetError as exc:
            self.problems[row.rule_id] = exc.errors
            self._forget(row.rule_id)
            if self._reported.get(row.rule_id) != row.revision:
                self._reported[row.rule_id] = row.revision
                for error in exc.errors:
                    log.error("stored rule %s (revision %d) skipped: %s",
                              row.rule_id, row.revision, error)
            return None
        self._remember(row, compiled)
        return compiled

    def _remember(self, row: StoredRule, compiled: CompiledRule) -> None:
        self.problems.pop(row.rule_id, None)
        self._reported.pop(row.rule_id, None)
        self._compiled[row.rule_id] = compiled
        self._compiled_at[row.rule_id] = row.revision

    def _forget(self, rule_id: str) -> None:
        self._compiled.pop(rule_id, None)
        self._compiled_at.pop(rule_id, None)


def _row_source(rule_id: str) -> str:
    return f"ttp_rule/{rule_id}"


def _live(stored: StoredScoped | None, now: datetime) -> tuple[ScopedState, ...]:
    """The unexpired scoped states of `stored`."""
    if stored is None:
        return ()
    return tuple(item for item in stored.states if not item.state.is_expired(now))
