"""The store contract: the `RuleStore` ABC (and, re-exported from
`decnet.vocabulary`, the `RuleState` and `RuleChange` it speaks in)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from decnet.ttp.store.fanout import Subscription
from decnet.vocabulary import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    SCOPED,
    STATE,
    ChangeKind,
    HistoryAction,
    HistoryEntry,
    RuleChange,
    RuleState,
    Scope,
    ScopedState,
    StateName,
    as_utc,
    utcnow,
    validate_rule_id,
)

if TYPE_CHECKING:
    from decnet.ttp.rules.compiled import CompiledRule

__all__ = [
    "DEFAULT_STATE",
    "DEFINITION",
    "DELETED",
    "RESYNC",
    "SCOPED",
    "STATE",
    "ChangeKind",
    "HistoryAction",
    "HistoryEntry",
    "RuleChange",
    "RuleState",
    "RuleStore",
    "RuleWriter",
    "Scope",
    "ScopedState",
    "StateName",
    "Subscription",
    "SyncStats",
    "as_utc",
    "utcnow",
    "validate_rule_id",
]


@dataclass(slots=True)
class SyncStats:
    """What a store that follows a database reports about it (a worker's /metrics); all
    zero for a store that follows none."""

    polls: int = 0
    changes_applied: int = 0
    poll_errors: int = 0
    resyncs: int = 0
    notifications: int = 0
    #: `time.monotonic()` of the last successful poll; None before the first.
    last_sync: float | None = None
    #: Revision the store has applied up to.
    watermark: int | None = None
    #: Times the tail found another database than the one it followed (a database
    #: dropped and migrated again) and reloaded everything from the new one.
    database_replacements: int = 0
    #: Why the database cannot be used at all (its SQLite file is gone or was replaced,
    #: see `DatabaseFileChanged`); None while it can.
    database_problem: str | None = None
    #: Changes that arrived pushed (NATS) and were applied without a database read.
    pushed: int = 0
    #: Pushed changes that did not continue the watermark (read from the database instead).
    push_gaps: int = 0


@runtime_checkable
class RuleWriter(Protocol):
    """A store whose definitions can be written (the database store; the master's sync)."""

    async def upsert_rule(self, compiled: CompiledRule, *, source_path: str | None,
                          updated_by: str | None) -> bool: ...

    async def delete_rule(self, rule_id: str) -> bool: ...


class RuleStore(ABC):
    """Where rules and their operator state live, and how edits are announced."""

    @abstractmethod
    async def load_compiled(self) -> list[CompiledRule]:
        """Every rule, its current state stamped (expired states count as default)."""

    @abstractmethod
    async def get_state(self, rule_id: str) -> RuleState:
        """State of `rule_id`; `RuleState()` when unknown, unset or expired."""

    @abstractmethod
    async def set_state(self, rule_id: str, state: RuleState, set_by: str) -> None:
        """Stamp, persist and announce a state; raises if the backend fails."""

    @abstractmethod
    def subscribe_changes(self) -> Subscription:
        """Register now and yield one `RuleChange` per rule edit until closed
        (`aclose()`); `pending()` says how many wait unread."""

    async def clear_state(self, rule_id: str, set_by: str) -> None:
        """Return `rule_id` to the default state."""
        await self.set_state(rule_id, DEFAULT_STATE, set_by)

    async def list_states(self) -> dict[str, RuleState]:
        """Every rule's non-default, unexpired state."""
        states: dict[str, RuleState] = {}
        for rule in await self.load_compiled():
            if not rule.state.is_default:
                states[rule.rule_id] = rule.state
        return states

    # Scoped states and history: not abstract, so stores written against the four
    # methods above still construct; the shipped backends implement them.

    async def set_scoped_state(self, rule_id: str, scope: Scope, state: RuleState,
                               set_by: str, *, via: str | None = None,
                               reason: str | None = None) -> None:
        """Stamp, persist and announce a state that applies only where `scope` matches
        (the default state clears it)."""
        raise NotImplementedError(f"{type(self).__name__} has no scoped states")

    async def clear_scoped_state(self, rule_id: str, scope: Scope, set_by: str, *,
                                 reason: str | None = None, via: str | None = None) -> None:
        """Remove the state of `rule_id` scoped exactly to `scope`."""
        raise NotImplementedError(f"{type(self).__name__} has no scoped states")

    async def scoped_states(self, rule_id: str) -> tuple[ScopedState, ...]:
        """Every unexpired scoped state of `rule_id`, by scope key."""
        return ()

    async def list_scoped_states(self) -> dict[str, tuple[ScopedState, ...]]:
        """Every rule's unexpired scoped states (rules without any left out)."""
        return {}

    async def history(self, rule_id: str | None = None, *, since: datetime | None = None,
                      limit: int | None = None) -> list[HistoryEntry]:
        """State changes (oldest first) of `rule_id` or every rule, since `since`."""
        return []

    @property
    def sync_stats(self) -> SyncStats | None:
        """How this store follows a shared database; None for a store that does not."""
        return None

    @property
    def statements_issued(self) -> int | None:
        """SQL statements this store has issued; None for a store without SQL."""
        return None

    async def start(self) -> None:
        """Start background work (watchers, timers). Idempotent."""

    async def stop(self) -> None:
        """Stop background work and release resources. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
