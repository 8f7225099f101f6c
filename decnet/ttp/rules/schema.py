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
    field_validator,
    model_validator,
)

from decnet.ttp.constants import (
    ENTERPRISE_TACTICS,
    SUB_TECHNIQUE_ID_RE,
    TACTIC_ID_RE,
    TECHNIQUE_ID_RE,
)
from decnet.vocabulary import RULE_ID_RE

SourceKind = Literal["command", "http_request", "auth_attempt", "payload", "email"]


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


class RuleSchema(BaseModel):
    """A rule file as written; any key not listed here is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule_id: StrictStr
    rule_version: Annotated[StrictInt, Field(ge=1)]
    name: StrictStr
    description: StrictStr = ""
    applies_to: Annotated[list[SourceKind], Field(min_length=1)]
    match: dict[str, Any]
    emits: Annotated[list[EmitSchema], Field(min_length=1)]
    evidence_fields: list[StrictStr] = Field(default_factory=list)
    last_reviewed: date | None = None
    next_review: date | None = None
    author: StrictStr | None = None
    references: list[StrictStr] = Field(default_factory=list)

    @field_validator("rule_id")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        if not RULE_ID_RE.fullmatch(value):
            raise ValueError(f"rule_id {value!r} must match [A-Za-z0-9_]{{1,64}}")
        return value

    @field_validator("applies_to")
    @classmethod
    def _unique_kinds(cls, value: list[str]) -> list[str]:
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
