"""The store contract: the `RuleStore` ABC (and, re-exported from
`decnet.vocabulary`, the `RuleState` and `RuleChange` it speaks in)."""

from __future__ import annotations

from abc import ABC, abstractmethod
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


class SyncStats(Protocol):
    """What a store that follows a database reports about it (a worker's /metrics)."""

    @property
    def polls(self) -> int: ...
    @property
    def changes_applied(self) -> int: ...
    @property
    def poll_errors(self) -> int: ...
    @property
    def resyncs(self) -> int: ...
    @property
    def notifications(self) -> int: ...
    @property
    def last_sync(self) -> float | None:
        """`time.monotonic()` of the last successful read of the database; None before."""
    @property
    def watermark(self) -> int | None:
        """The revision the store has applied up to."""
    @property
    def database_replacements(self) -> int: ...
    @property
    def database_problem(self) -> str | None:
        """Why the database cannot be used at all; None while it can."""


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
