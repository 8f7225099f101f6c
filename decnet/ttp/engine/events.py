"""Events in, tags out: the data the engine reads and writes."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from decnet.ttp.constants import ATTACK_RELEASE, EVENT_MAX_ID_CHARS, TAG_UUID_NAMESPACE
from decnet.ttp.engine.jsonio import tag_dict
from decnet.ttp.errors import EventError
from decnet.ttp.rules.compiled import CompiledRule
from decnet.vocabulary import RuleState

_NAMESPACE = uuid.UUID(TAG_UUID_NAMESPACE)
_NAMESPACE_BYTES = _NAMESPACE.bytes


__all__ = ["Event", "EventError", "Tag", "tag_uuid"]


@dataclass(frozen=True, slots=True)
class Event:
    """A honeypot observation: what kind, which record, and its payload.

    `src_ip`, `session_id` and `sensor` trace a tag back to an attacker, a session
    and a honeypot; `timestamp` (event time, Unix seconds) drives cross-event windows.
    """

    source_kind: str
    source_id: str
    payload: Mapping[str, Any]
    attacker_uuid: str | None = None
    session_id: str | None = None
    decky_id: str | None = None
    src_ip: str | None = None
    sensor: str | None = None
    timestamp: float | None = None

    @classmethod
    def from_mapping(cls, data: Any) -> Event:
        """Validate a decoded JSON object; raises `EventError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise EventError("event must be a JSON object")
        kind = data.get("source_kind")
        if not isinstance(kind, str) or not kind:
            raise EventError("event.source_kind must be a non-empty string")
        _check_text("source_kind", kind)
        source_id = _opt_str(data, "source_id")
        if not source_id:
            raise EventError("event.source_id must be a non-empty string")
        payload = data.get("payload", {})
        if not isinstance(payload, Mapping):
            raise EventError("event.payload must be a JSON object")
        return cls(kind, source_id, payload, _opt_str(data, "attacker_uuid"),
                   _opt_str(data, "session_id"), _opt_str(data, "decky_id"),
                   _opt_str(data, "src_ip"), _opt_str(data, "sensor"),
                   _opt_time(data.get("timestamp")))


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) is str and value.isascii() and len(value) <= EVENT_MAX_ID_CHARS:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 128:
            raise EventError(f"event.{key} is a number too large for an id")
        return str(value)
    if isinstance(value, str):
        return _check_text(key, value)
    raise EventError(f"event.{key} must be a string")


def _check_text(key: str, value: str) -> str:
    """An identifying text: bounded, and UTF-8 (no lone surrogates) so tags can carry it."""
    if len(value) > EVENT_MAX_ID_CHARS:
        raise EventError(f"event.{key} is longer than {EVENT_MAX_ID_CHARS} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise EventError(f"event.{key} holds a lone surrogate (not UTF-8 text)") from None
    return value


def _opt_time(value: Any) -> float | None:
    """Event time as Unix seconds: a number, or ISO 8601 text with an offset (or `Z`)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            raise EventError("event.timestamp is out of range") from None
    elif isinstance(value, str) and len(value) <= 64:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise EventError("event.timestamp must be ISO 8601 or Unix seconds") from None
        if moment.tzinfo is None:
            raise EventError("event.timestamp needs a UTC offset (or Z)")
        seconds = moment.timestamp()
    else:
        raise EventError("event.timestamp must be ISO 8601 or Unix seconds")
    if not math.isfinite(seconds) or not 0 <= seconds < 1e11:
        raise EventError("event.timestamp is out of range")
    return seconds


def tag_uuid(source_kind: str, source_id: str, rule_id: str, rule_version: int,
             technique_id: str, sub_technique_id: str | None) -> str:
    """Deterministic tag id: the same observation tagged by the same rule is one tag.

    `uuid.uuid5(namespace, name)` as text, computed without building UUID objects.
    """
    name = "\x1f".join((source_kind, source_id, rule_id, str(rule_version), technique_id,
                        sub_technique_id or ""))
    # surrogatepass: an Event built in Python (not read from JSON) may hold lone surrogates
    data = name.encode("utf-8", "surrogatepass")
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + data).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class Tag:
    """One technique attributed to one event by one rule."""

    uuid: str
    source_kind: str
    source_id: str
    rule_id: str
    rule_version: int
    tactic: str
    technique_id: str
    sub_technique_id: str | None
    confidence: float
    evidence: Mapping[str, Any]
    attack_release: str = ATTACK_RELEASE
    attacker_uuid: str | None = None
    session_id: str | None = None
    decky_id: str | None = None
    src_ip: str | None = None
    sensor: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The tag as a JSON-ready object, bounded: see `decnet.ttp.engine.jsonio.tag_dict`.

        Write tags with `jsonio.dump_tag`/`dump_tags`: orjson cannot write an integer
        beyond 64 bits, which evidence may hold exactly.
        """
        return tag_dict(self)


def rule_tags(rule: CompiledRule, state: RuleState, event: Event,
              evidence: Mapping[str, Any]) -> list[Tag]:
    """One tag per technique `rule` emits for `event`, confidence clamped by `state`."""
    return [
        Tag(
            uuid=tag_uuid(event.source_kind, event.source_id, rule.rule_id,
                          rule.rule_version, emit.technique_id, emit.sub_technique_id),
            source_kind=event.source_kind,
            source_id=event.source_id,
            rule_id=rule.rule_id,
            rule_version=rule.rule_version,
            tactic=emit.tactic,
            technique_id=emit.technique_id,
            sub_technique_id=emit.sub_technique_id,
            confidence=state.clamp(emit.confidence),
            evidence=evidence,
            attacker_uuid=event.attacker_uuid,
            session_id=event.session_id,
            decky_id=event.decky_id,
            src_ip=event.src_ip,
            sensor=event.sensor,
        )
        for emit in rule.emits
    ]
