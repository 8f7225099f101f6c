"""The compiled form of a cross-event rule: what to count, per which group, over what window.

Semantics follow Sigma's correlation rules: `event_count` counts the events that
pass the rule's `match` filter, `value_count` counts the distinct values of one
field among them; both per group (the values of `group_by`) over an event-time
window, firing once the count reaches the threshold. `after` adds Sigma's ordered
temporal condition: an event counts only when the listed rules (or techniques)
have fired for the same group within the window before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from decnet.ttp.rules.matchers import Matcher

CorrelationType = Literal["event_count", "value_count"]

#: Group-by names read from the event itself rather than its payload (`session` is
#: Sigma's spelling of `session_id`).
EVENT_FIELDS: Final = {
    "src_ip": "src_ip",
    "session_id": "session_id",
    "session": "session_id",
    "sensor": "sensor",
    "decky_id": "decky_id",
    "attacker_uuid": "attacker_uuid",
    "source_kind": "source_kind",
}


@dataclass(frozen=True, slots=True)
class CorrelationSpec:
    """A validated cross-event rule body; `filters` holds one predicate per input kind.

    A kind mapped to None counts every event of that kind. `kinds` are the source
    kinds read (the rule's `applies_to`, or a mapped lifter's own inputs).
    """

    type: CorrelationType
    group_by: tuple[str, ...]
    timespan: float
    threshold: int
    value_field: str | None
    kinds: frozenset[str]
    after_rules: tuple[str, ...] = ()
    after_techniques: tuple[str, ...] = ()
    filters: Mapping[str, Matcher | None] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False)
    #: the filter as written, so rules sharing one filter evaluate it once per event
    filter_source: str = field(default="", compare=False, repr=False)

    @property
    def has_after(self) -> bool:
        return bool(self.after_rules or self.after_techniques)
