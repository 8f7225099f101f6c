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
    #: A rule's scoped states changed; `new_value` is every current `ScopedState` of the
    #: rule (a tuple, maybe empty). Subscribers that do not know scopes ignore it.
    SCOPED = "scoped_state"


DEFINITION: Final = ChangeKind.DEFINITION
STATE: Final = ChangeKind.STATE
DELETED: Final = ChangeKind.DELETED
RESYNC: Final = ChangeKind.RESYNC
SCOPED: Final = ChangeKind.SCOPED


class RuleChange(NamedTuple):
    """One rule edit, as a subscriber sees it."""

    change_kind: ChangeKind
    rule_id: str
    new_value: CompiledRule | RuleState | tuple[ScopedState, ...] | None = None

    @property
    def is_deletion(self) -> bool:
        return self.change_kind is ChangeKind.DELETED


#: What a scope value (a decky id, a sensor name) may be.
SCOPE_VALUE_RE: Final = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
#: The dimensions a scope may name, in their canonical order.
SCOPE_DIMENSIONS: Final = ("decky", "sensor")


class InvalidScopeError(DecnetTTPError, ValueError):
    """A scope that names an unknown dimension, a bad value, or nothing at all."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a scoped state applies: some deckies, some sensors, or both.

    An event matches when every dimension the scope names holds the event's value
    (`decky_id`, `sensor`). Specificity orders the states that match one event:
    decky and sensor (3) > decky (2) > sensor (1) > the unscoped state (0).
    """

    deckies: frozenset[str] = frozenset()
    sensors: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.deckies and not self.sensors:
            raise InvalidScopeError("a scope names at least one decky or sensor")
        for value in (*self.deckies, *self.sensors):
            if not isinstance(value, str) or not SCOPE_VALUE_RE.fullmatch(value):
                raise InvalidScopeError(
                    f"invalid scope value {value!r}: expected [A-Za-z0-9_.:@-]{{1,128}}")

    @classmethod
    def parse(cls, specs: str | list[str] | tuple[str, ...]) -> Scope:
        """`decky=decky-03,decky-07` (several specs: each adds its values)."""
        deckies: set[str] = set()
        sensors: set[str] = set()
        for spec in ([specs] if isinstance(specs, str) else specs):
            for part in spec.split(";"):
                if not part:
                    continue
                dimension, sep, values = part.partition("=")
                dimension = dimension.strip()
                if not sep or dimension not in SCOPE_DIMENSIONS:
                    raise InvalidScopeError(
                        f"invalid scope {part!r}: expected decky=VALUE[,VALUE…] or "
                        "sensor=VALUE[,VALUE…]")
                found = [v.strip() for v in values.split(",")]
                if not all(found):
                    raise InvalidScopeError(f"invalid scope {part!r}: an empty value")
                (deckies if dimension == "decky" else sensors).update(found)
        return cls(frozenset(deckies), frozenset(sensors))

    @property
    def key(self) -> str:
        """Canonical text, e.g. `decky=decky-03,decky-07;sensor=s1` (equal scopes, equal keys)."""
        parts = []
        if self.deckies:
            parts.append("decky=" + ",".join(sorted(self.deckies)))
        if self.sensors:
            parts.append("sensor=" + ",".join(sorted(self.sensors)))
        return ";".join(parts)

    @property
    def specificity(self) -> int:
        return (2 if self.deckies else 0) + (1 if self.sensors else 0)

    def matches(self, decky_id: str | None, sensor: str | None) -> bool:
        if self.deckies and decky_id not in self.deckies:
            return False
        return not (self.sensors and sensor not in self.sensors)

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, slots=True)
class ScopedState:
    """A `RuleState` that applies only where `scope` matches."""

    scope: Scope
    state: RuleState


def restrictiveness(state: RuleState) -> tuple[int, float]:
    """Sort key, highest = most restrictive: disabled, then clipped (lower ceiling first)."""
    if state.state is StateName.DISABLED:
        return (2, 0.0)
    if state.state is StateName.CLIPPED:
        return (1, 1.0 - (state.confidence_max or 0.0))
    return (0, 0.0)


def resolve_state(unscoped: RuleState, scoped: tuple[ScopedState, ...],
                  decky_id: str | None, sensor: str | None,
                  now: datetime | None = None) -> RuleState:
    """The state that applies to one event: the most specific unexpired scoped state that
    matches (between equally specific ones, the most restrictive), else `unscoped`."""
    best: ScopedState | None = None
    for candidate in scoped:
        if not candidate.scope.matches(decky_id, sensor):
            continue
        if candidate.state.expires_at is not None and candidate.state.is_expired(now):
            continue
        if best is None or (candidate.scope.specificity, restrictiveness(candidate.state)) > \
                (best.scope.specificity, restrictiveness(best.state)):
            best = candidate
    return unscoped if best is None else best.state


class HistoryAction(enum.StrEnum):
    """What a state-history entry records."""

    SET = "set"
    CLEAR = "clear"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Audit:
    """Who changes a state, how, why and from where (a host or an API token's name):
    what the history records beside the old and new values."""

    action: HistoryAction
    by: str | None
    reason: str | None
    via: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One state change in the audit log; `scope` None for the unscoped state."""

    rule_id: str
    action: HistoryAction
    scope: str | None
    old: RuleState | None
    new: RuleState | None
    by: str | None
    reason: str | None
    at: datetime
    via: str | None
