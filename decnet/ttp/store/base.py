"""The store contract: `RuleState`, `RuleChange` and the `RuleStore` ABC."""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, Self

from decnet.ttp.constants import RULE_ID_RE
from decnet.ttp.errors import InvalidRuleId, InvalidStateError

if TYPE_CHECKING:
    from decnet.ttp.impl.rule_engine import CompiledRule


class StateName(enum.StrEnum):
    """What an operator has decided about a rule."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    CLIPPED = "clipped"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC datetime; naive values are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def validate_rule_id(rule_id: str) -> str:
    """Return `rule_id` if it is `[A-Za-z0-9_]{1,64}`, else raise `InvalidRuleId`."""
    if not isinstance(rule_id, str) or not RULE_ID_RE.fullmatch(rule_id):
        raise InvalidRuleId(f"invalid rule id {rule_id!r}: expected [A-Za-z0-9_]{{1,64}}")
    return rule_id


@dataclass(frozen=True, slots=True)
class RuleState:
    """Operator state of one rule. The default value means "enabled, nothing set"."""

    state: StateName = StateName.ENABLED
    confidence_max: float | None = None
    expires_at: datetime | None = None
    reason: str | None = None
    set_by: str | None = None
    set_at: datetime | None = None

    def __post_init__(self) -> None:
        try:
            name = StateName(self.state)
        except ValueError:
            known = ", ".join(s.value for s in StateName)
            raise InvalidStateError(f"unknown state {self.state!r}; known: {known}") from None
        object.__setattr__(self, "state", name)
        if self.confidence_max is not None:
            ceiling = float(self.confidence_max)
            if not (math.isfinite(ceiling) and 0.0 <= ceiling <= 1.0):
                raise InvalidStateError(f"confidence_max must be in [0, 1], got {ceiling}")
            object.__setattr__(self, "confidence_max", ceiling)
        if name is StateName.CLIPPED and self.confidence_max is None:
            raise InvalidStateError("a clipped state needs confidence_max")
        if name is not StateName.CLIPPED and self.confidence_max is not None:
            raise InvalidStateError("confidence_max applies only to the clipped state")
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", as_utc(self.expires_at))
        if self.set_at is not None:
            object.__setattr__(self, "set_at", as_utc(self.set_at))

    @property
    def is_default(self) -> bool:
        return self.state is StateName.ENABLED and self.expires_at is None

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or utcnow())

    def effective(self, now: datetime | None = None) -> RuleState:
        """This state, or the default one once it has expired."""
        return DEFAULT_STATE if self.is_expired(now) else self

    def stamped(self, set_by: str, set_at: datetime | None = None) -> RuleState:
        return replace(self, set_by=set_by, set_at=set_at or utcnow())

    def clamp(self, confidence: float) -> float:
        """Confidence after this state's ceiling: lowered, never raised."""
        if self.state is StateName.CLIPPED and self.confidence_max is not None:
            return min(confidence, self.confidence_max)
        return confidence


DEFAULT_STATE: Final = RuleState()

ChangeKind = Literal["definition", "state", "deleted", "resync"]

#: A rule's definition was added or replaced; `new_value` is the `CompiledRule`.
DEFINITION: Final = "definition"
#: A rule's state changed (including a revert by expiry); `new_value` is the `RuleState`.
STATE: Final = "state"
#: A rule was removed; `new_value` is None.
DELETED: Final = "deleted"
#: The subscriber fell too far behind; reload everything with `load_compiled()`.
RESYNC: Final = "resync"


class RuleChange(NamedTuple):
    """One rule edit, as a subscriber sees it."""

    change_kind: ChangeKind
    rule_id: str
    new_value: CompiledRule | RuleState | None = None

    @property
    def is_deletion(self) -> bool:
        return self.change_kind == DELETED


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
    def subscribe_changes(self) -> AsyncIterator[RuleChange]:
        """Register now and yield one `RuleChange` per rule edit until closed."""

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

    async def start(self) -> None:
        """Start background work (watchers, timers). Idempotent."""

    async def stop(self) -> None:
        """Stop background work and release resources. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
