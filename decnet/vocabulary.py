"""The words every layer shares: rule states, rule changes, rule ids and the clock.

This module imports nothing of the project (an import-linter contract checks it), so
the rule format, the engine, the stores, the bus and the CLI can all depend on it
without depending on each other. `decnet.ttp.store.base` and `decnet.ttp.errors`
re-export what they always exported from here.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from decnet.ttp.rules.compiled import CompiledRule

#: What a rule id may be: it becomes a file stem, a bus subject token and a SQL key.
RULE_ID_RE: Final = re.compile(r"^[A-Za-z0-9_]{1,64}$")

#: A source of the current UTC time; stores and timers take one so tests can pass theirs.
Clock = Callable[[], datetime]


class DecnetTTPError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidRuleId(DecnetTTPError, ValueError):
    """A rule id outside `[A-Za-z0-9_]{1,64}` (it could inject bus wildcards or paths)."""


class InvalidStateError(DecnetTTPError, ValueError):
    """A `RuleState` whose fields contradict each other."""


def utcnow() -> datetime:
    """The wall clock, in UTC: the default `Clock`."""
    return datetime.now(UTC)


def iso(moment: datetime | None, timespec: str = "auto") -> str | None:
    """ISO 8601 text of `moment` (None stays None): how every interface writes a time."""
    return None if moment is None else moment.isoformat(timespec=timespec)


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


class StateName(enum.StrEnum):
    """What an operator has decided about a rule."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    CLIPPED = "clipped"


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


class ChangeKind(enum.StrEnum):
    """What a `RuleChange` (and a change-log row in SQL) says happened to a rule."""

    #: A rule's definition was added or replaced; `new_value` is the `CompiledRule`.
    DEFINITION = "definition"
    #: A rule's state changed (including a revert by expiry); `new_value` is the `RuleState`.
    STATE = "state"
    #: A rule was removed; `new_value` is None.
    DELETED = "deleted"
    #: The subscriber fell too far behind; reload everything with `load_compiled()`.
    RESYNC = "resync"


DEFINITION: Final = ChangeKind.DEFINITION
STATE: Final = ChangeKind.STATE
DELETED: Final = ChangeKind.DELETED
RESYNC: Final = ChangeKind.RESYNC


class RuleChange(NamedTuple):
    """One rule edit, as a subscriber sees it."""

    change_kind: ChangeKind
    rule_id: str
    new_value: CompiledRule | RuleState | None = None

    @property
    def is_deletion(self) -> bool:
        return self.change_kind is ChangeKind.DELETED
