"""The `tests:` block of a rule file: events a rule must tag and events it must leave alone.

Each case holds exactly one of `event` (one event, for single-event rules) or `sequence`
(events fed in order, for cross-event rules), in the native event shape; `source_id` may be
left out (the runner names the event). A `fires` case may list the techniques it `expect`s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from decnet.ttp.constants import (
    MAX_TEST_SEQUENCE_EVENTS,
    RULE_ID_RE,
    SOURCE_KIND_RE,
    SUB_TECHNIQUE_ID_RE,
    TECHNIQUE_ID_RE,
)

_OPTIONAL_TEXT = ("source_id", "attacker_uuid", "session_id", "decky_id", "src_ip", "sensor")


class TestEvent(BaseModel):
    """One event as a test writes it: the native event JSON, `source_id` optional."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid", frozen=True)

    source_kind: StrictStr
    payload: dict[str, Any] = Field(default_factory=dict)
    source_id: Annotated[StrictStr, Field(min_length=1)] | None = None
    attacker_uuid: StrictStr | None = None
    session_id: StrictStr | None = None
    decky_id: StrictStr | None = None
    src_ip: StrictStr | None = None
    sensor: StrictStr | None = None
    timestamp: Annotated[float, Field(ge=0, lt=1e11, allow_inf_nan=False)] | None = None

    @field_validator("source_kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if not SOURCE_KIND_RE.fullmatch(value):
            raise ValueError(f"source_kind {value!r} must match [a-z][a-z0-9_]*")
        return value

    @field_validator(*_OPTIONAL_TEXT, mode="before")
    @classmethod
    def _numbers_as_text(cls, value: Any) -> Any:
        """Ids may be written as numbers, as in event JSON; they are text."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("payload", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        if isinstance(value, dict) and not all(isinstance(k, str) for k in value):
            raise ValueError("payload keys must be strings")
        return value

    @field_validator("timestamp", mode="before")
    @classmethod
    def _unix_seconds(cls, value: Any) -> Any:
        """Unix seconds, or an ISO 8601 time with an offset (quoted or YAML's own)."""
        if value is None:
            return None
        if isinstance(value, bool):
            raise ValueError("timestamp must be Unix seconds or ISO 8601 with an offset")
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("timestamp must be Unix seconds or ISO 8601 with an "
                                 "offset") from None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("timestamp needs a UTC offset (or Z)")
            return value.timestamp()
        return value

    def as_event(self, default_source_id: str) -> dict[str, Any]:
        """The native event JSON, `source_id` filled in when the test left it out."""
        event: dict[str, Any] = {"source_kind": self.source_kind, "payload": self.payload}
        for key in _OPTIONAL_TEXT:
            value = getattr(self, key)
            if value is not None:
                event[key] = value
        event.setdefault("source_id", default_source_id)
        if self.timestamp is not None:
            event["timestamp"] = self.timestamp
        return event


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event: TestEvent | None = None
    sequence: Annotated[list[TestEvent] | None,
                        Field(min_length=1, max_length=MAX_TEST_SEQUENCE_EVENTS)] = None

    @model_validator(mode="before")
    @classmethod
    def _not_a_bare_event(cls, data: Any) -> Any:
        if isinstance(data, dict) and "source_kind" in data:
            raise ValueError("a test case is 'event: {...}' or 'sequence: [...]', not a bare "
                             "event")
        return data

    @model_validator(mode="after")
    def _one_shape(self) -> _Case:
        if (self.event is None) == (self.sequence is None):
            raise ValueError("a test case holds exactly one of 'event' or 'sequence'")
        return self

    @property
    def events(self) -> list[TestEvent]:
        return [self.event] if self.event is not None else list(self.sequence or ())


class FiresCase(_Case):
    """Events the rule must tag; with `expect`, each listed technique must be among its tags."""

    expect: list[StrictStr] = Field(default_factory=list)

    @field_validator("expect")
    @classmethod
    def _technique_ids(cls, value: list[str]) -> list[str]:
        for technique in value:
            if not (TECHNIQUE_ID_RE.fullmatch(technique)
                    or SUB_TECHNIQUE_ID_RE.fullmatch(technique)):
                raise ValueError(f"expect {technique!r} is not an ATT&CK technique or "
                                 "sub-technique id")
        return value


class QuietCase(_Case):
    """Events the rule must leave alone (a benign look-alike)."""


class RuleTests(BaseModel):
    """A rule's own tests; each case runs against the rule alone.

    `with_rules` names the other rules a cross-event rule builds on (their tags feed it);
    they are loaded beside it for these tests, and their own tags do not count.
    """

    __test__ = False
    model_config = ConfigDict(extra="forbid", frozen=True)

    fires: list[FiresCase] = Field(default_factory=list)
    quiet: list[QuietCase] = Field(default_factory=list)
    with_rules: list[StrictStr] = Field(default_factory=list)

    @field_validator("with_rules")
    @classmethod
    def _rule_ids(cls, value: list[str]) -> list[str]:
        for rule_id in value:
            if not RULE_ID_RE.fullmatch(rule_id):
                raise ValueError(f"with_rules {rule_id!r} is not a rule id")
        return value

    def unknown_expectations(self, emitted: set[str]) -> list[tuple[int, str]]:
        """`(case index, technique)` of every `expect` naming a technique the rule never emits."""
        return [(n, t) for n, case in enumerate(self.fires) for t in case.expect
                if t not in emitted]

