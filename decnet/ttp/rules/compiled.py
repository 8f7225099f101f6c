"""`CompiledRule`: the immutable, ready-to-evaluate form of a rule."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, NamedTuple, NoReturn

from decnet.ttp.rules.correlation import CorrelationSpec
from decnet.ttp.rules.matchers import Matcher
from decnet.vocabulary import DEFAULT_STATE, RuleState, ScopedState, resolve_state


class FrozenDict(dict[Any, Any]):
    """A dict that refuses changes: a read-only mapping without the 40-byte view object
    a `MappingProxyType` adds (10,000 rules hold one each)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a compiled rule's mapping is read-only")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> Any:
        raise TypeError("compiled matchers are not picklable")


class Emit(NamedTuple):
    """One technique a match emits: `(technique_id, sub_technique_id, tactic, confidence)`."""

    technique_id: str
    sub_technique_id: str | None
    tactic: str
    confidence: float


@dataclass(frozen=True, slots=True)
class ReviewInfo:
    """Optional review metadata of a rule."""

    last_reviewed: date | None = None
    next_review: date | None = None
    author: str | None = None
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A validated rule with its operator state stamped on; never written back to YAML.

    `matchers` (one predicate per source kind, empty for cross-event and unmapped
    lifter rules; `correlation` holds a cross-event rule's own) live beside
    the data and are not part of equality. `source_yaml` is the exact text the rule was
    compiled from, kept where no store holds it (a rules directory); a rule loaded from
    the database leaves it empty and carries the text's SHA-256 (`source_digest`)
    instead: `DatabaseRuleStore.with_source` fetches the text when it is shown.
    """

    rule_id: str
    rule_version: int
    name: str
    applies_to: frozenset[str]
    match_spec: Mapping[str, Any]
    emits: tuple[Emit, ...]
    evidence_fields: tuple[str, ...]
    state: RuleState = DEFAULT_STATE
    description: str = ""
    #: States that apply only to some deckies or sensors (see `resolve_state`).
    scoped: tuple[ScopedState, ...] = ()
    review: ReviewInfo = ReviewInfo()
    lifter: str | None = None
    correlation: CorrelationSpec | None = None
    source_path: str | None = field(default=None, compare=False)
    source_yaml: str = field(default="", compare=False, repr=False)
    matchers: Mapping[str, Matcher] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)
    #: SHA-256 of the source text when `source_yaml` is not kept (else None).
    source_digest: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def yaml_sha256(self) -> str:
        """Hex SHA-256 of the exact source text (kept or not)."""
        if self.source_digest is not None:
            return self.source_digest.hex()
        return hashlib.sha256(self.source_yaml.encode("utf-8")).hexdigest()

    @property
    def is_lifter(self) -> bool:
        return self.lifter is not None

    @property
    def is_correlation(self) -> bool:
        """A cross-event rule (its own `correlation:` block or a mapped lifter)."""
        return self.correlation is not None

    @property
    def fires(self) -> bool:
        """False for a lifter that decnet-ttp cannot run (it carries a warning saying so)."""
        return bool(self.matchers) or self.correlation is not None

    def with_state(self, state: RuleState) -> CompiledRule:
        """The same rule carrying `state` (a new value; this one is unchanged)."""
        return self if state == self.state else replace(self, state=state)

    def with_scoped(self, scoped: tuple[ScopedState, ...]) -> CompiledRule:
        """The same rule carrying `scoped` states instead of its own."""
        return self if scoped == self.scoped else replace(self, scoped=scoped)

    def state_for(self, decky_id: str | None, sensor: str | None,
                  now: datetime | None = None) -> RuleState:
        """The state that applies to an event from `decky_id` and `sensor`."""
        if not self.scoped:
            return self.state
        return resolve_state(self.state, self.scoped, decky_id, sensor, now)

    def __reduce__(self) -> Any:
        raise TypeError("CompiledRule holds compiled matchers and is not picklable; "
                        "store its source_yaml instead")


def deep_freeze(value: Any) -> Any:
    """Read-only view of parsed YAML: mappings become proxies, lists become tuples.

    A mapping whose values are all scalars is wrapped without a copy: the parsed
    dict belongs to the compiler and nobody else holds it.
    """
    if isinstance(value, MappingProxyType):
        return value
    if isinstance(value, Mapping):
        if isinstance(value, dict) and not any(
                isinstance(v, Mapping | list | tuple) for v in value.values()):
            return MappingProxyType(value)
        return MappingProxyType({k: deep_freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(deep_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again, e.g. for JSON output."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value
