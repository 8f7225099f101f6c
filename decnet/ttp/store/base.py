"""The store contract: the `RuleStore` ABC (and, re-exported from
`decnet.vocabulary`, the `RuleState` and `RuleChange` it speaks in)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from decnet.ttp.store.fanout import Subscription
from decnet.vocabulary import (
    DEFAULT_STATE,
    DEFINITION,
    DELETED,
    RESYNC,
    STATE,
    ChangeKind,
    RuleChange,
    RuleState,
    StateName,
    as_utc,
    utcnow,
    validate_rule_id,
)

if TYPE_CHECKING:
    from decnet.ttp.rules.compiled import CompiledRule

__all__ = ["DEFAULT_STATE", "DEFINITION", "DELETED", "RESYNC", "STATE", "ChangeKind",
           "RuleChange", "RuleState", "RuleStore", "RuleWriter", "StateName", "Subscription",
           "SyncStats", "as_utc", "utcnow",
           "validate_rule_id"]


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
