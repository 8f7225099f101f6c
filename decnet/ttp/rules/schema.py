"""`RuleSchema`: the shape of a rule file, validated with pydantic."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from decnet.ttp.constants import (
    CORRELATION_MAX_THRESHOLD,
    ENTERPRISE_TACTICS,
    SOURCE_KIND_RE,
    SUB_TECHNIQUE_ID_RE,
    TACTIC_ID_RE,
    TECHNIQUE_ID_RE,
)
from decnet.ttp.rules.testcases import RuleTests
from decnet.ttp.rules.timespan import parse_timespan
from decnet.vocabulary import RULE_ID_RE

#: A source kind: any `[a-z][a-z0-9_]*` name (up to 64 characters).
SourceKind = StrictStr


class EmitSchema(BaseModel):
    """One ATT&CK technique a match emits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tactic: StrictStr
    technique_id: StrictStr
    sub_technique_id: StrictStr | None = None
    confidence: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=False)]

    @field_validator("tactic")
    @classmethod
    def _tactic(cls, value: str) -> str:
        if not TACTIC_ID_RE.fullmatch(value):
            raise ValueError(f"tactic {value!r} is not an ATT&CK tactic id (TA####)")
        if value not in ENTERPRISE_TACTICS:
            raise ValueError(f"tactic {value!r} is not an enterprise ATT&CK tactic")
        return value

    @field_validator("technique_id")
    @classmethod
    def _technique(cls, value: str) -> str:
        if not TECHNIQUE_ID_RE.fullmatch(value):
            raise ValueError(f"technique_id {value!r} is not an ATT&CK technique id (T####)")
        return value

    @field_validator("confidence", mode="before")
    @classmethod
    def _no_bool(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("confidence must be a number in [0, 1]")
        return value

    @model_validator(mode="after")
    def _sub_under_parent(self) -> EmitSchema:
        sub = self.sub_technique_id
        if sub is not None:
            if not SUB_TECHNIQUE_ID_RE.fullmatch(sub):
                raise ValueError(f"sub_technique_id {sub!r} is not an ATT&CK sub-technique "
                                 "id (T####.###)")
            if sub.split(".", 1)[0] != self.technique_id:
                raise ValueError(f"sub_technique_id {sub} is not under technique "
                                 f"{self.technique_id}")
        return self


class AfterSchema(BaseModel):
    """What must have fired in the same group, within the window, before an event counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[StrictStr] = Field(default_factory=list)
    techniques: list[StrictStr] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _rule_ids(cls, value: list[str]) -> list[str]:
        for rule_id in value:
            if not RULE_ID_RE.fullmatch(rule_id):
                raise ValueError(f"rule id {rule_id!r} must match [A-Za-z0-9_]{{1,64}}")
        return value

    @field_validator("techniques")
    @classmethod
    def _technique_ids(cls, value: list[str]) -> list[str]:
        for technique in value:
            if not (TECHNIQUE_ID_RE.fullmatch(technique)
                    or SUB_TECHNIQUE_ID_RE.fullmatch(technique)):
                raise ValueError(f"{technique!r} is not an ATT&CK technique id "
                                 "(T#### or T####.###)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> AfterSchema:
        if not self.rules and not self.techniques:
            raise ValueError("after needs rules or techniques")
        return self


class ConditionSchema(BaseModel):
    """Sigma's correlation condition: a lower bound, and the field `value_count` counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gte: Annotated[StrictInt, Field(ge=1, le=CORRELATION_MAX_THRESHOLD)] | None = None
    gt: Annotated[StrictInt, Field(ge=0, lt=CORRELATION_MAX_THRESHOLD)] | None = None
    field: StrictStr | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ConditionSchema:
        if (self.gte is None) == (self.gt is None):
            raise ValueError("condition needs exactly one of gte or gt (a count that "
                             "fires once reached)")
        return self

    @property
    def threshold(self) -> int:
        """The count at which the rule fires."""
        return self.gte if self.gte is not None else (self.gt or 0) + 1


class CorrelationSchema(BaseModel):
    """A cross-event rule: count events (or distinct values) per group over a window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["event_count", "value_count"]
    group_by: Annotated[list[StrictStr], Field(min_length=1, max_length=8)]
    timespan: float
    condition: ConditionSchema
    after: AfterSchema | None = None

    @field_validator("timespan", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> float:
        return parse_timespan(value)

    @field_validator("group_by")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        if any(not f for f in value) or len(set(value)) != len(value):
            raise ValueError("group_by takes distinct non-empty field names")
        return value

    @model_validator(mode="after")
    def _value_field(self) -> CorrelationSchema:
        if self.type == "value_count" and not self.condition.field:
            raise ValueError("value_count needs condition.field (the field whose distinct "
                             "values are counted)")
        if self.type == "event_count" and self.condition.field:
            raise ValueError("condition.field belongs to value_count; event_count counts "
                             "events")
        return self


class RuleSchema(BaseModel):
    """A rule file as written; any key not listed here is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: StrictStr
    rule_version: Annotated[StrictInt, Field(ge=1)]
    name: StrictStr
    description: StrictStr = ""
    applies_to: Annotated[list[SourceKind], Field(min_length=1)]
    match: dict[str, Any] = Field(default_factory=dict)
    correlation: CorrelationSchema | None = None
    emits: Annotated[list[EmitSchema], Field(min_length=1)]
    evidence_fields: list[StrictStr] = Field(default_factory=list)
    last_reviewed: date | None = None
    next_review: date | None = None
    author: StrictStr | None = None
    references: list[StrictStr] = Field(default_factory=list)
    tests: RuleTests | None = None

    @field_validator("rule_id")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        if not RULE_ID_RE.fullmatch(value):
            raise ValueError(f"rule_id {value!r} must match [A-Za-z0-9_]{{1,64}}")
        return value

    @field_validator("applies_to")
    @classmethod
    def _unique_kinds(cls, value: list[str]) -> list[str]:
        for kind in value:
            if not SOURCE_KIND_RE.fullmatch(kind):
                shown = repr(kind) if len(kind) <= 70 else repr(kind[:70]) + "…"
                raise ValueError(f"source kind {shown} must match [a-z][a-z0-9_]* "
                                 "(at most 64 characters)")
        if len(set(value)) != len(value):
            raise ValueError("applies_to lists a source kind twice")
        return value

    @field_validator("emits")
    @classmethod
    def _distinct_emits(cls, value: list[EmitSchema]) -> list[EmitSchema]:
        seen: set[tuple[str, str | None]] = set()
        for emit in value:
            key = (emit.technique_id, emit.sub_technique_id)
            if key in seen:
                shown = emit.sub_technique_id or emit.technique_id
                raise ValueError(f"{shown} is emitted twice; its tags would share one uuid")
            seen.add(key)
        return value

    @field_validator("references")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"reference {url!r} is not an http(s) URL")
        return value

    @field_validator("tests")
    @classmethod
    def _expect_emitted(cls, value: RuleTests | None, info: ValidationInfo) -> RuleTests | None:
        emits: list[EmitSchema] = info.data.get("emits") or []
        if value is not None and emits:
            emitted = {t for e in emits for t in (e.technique_id, e.sub_technique_id) if t}
            for n, technique in value.unknown_expectations(emitted):
                raise ValueError(f"fires.{n}.expect names {technique}, which this rule "
                                 "does not emit")
        return value
