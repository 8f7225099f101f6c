"""Events in, tags out: the data the engine reads and writes."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from decnet.ttp.constants import ATTACK_RELEASE, TAG_UUID_NAMESPACE
from decnet.ttp.errors import DecnetTTPError

_NAMESPACE = uuid.UUID(TAG_UUID_NAMESPACE)
_NAMESPACE_BYTES = _NAMESPACE.bytes


class EventError(DecnetTTPError, ValueError):
    """An event that is not shaped like one (no source_kind, payload not a mapping...)."""


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
        source_id = data.get("source_id")
        if isinstance(source_id, int) and not isinstance(source_id, bool):
            source_id = str(source_id)
        if not isinstance(source_id, str) or not source_id:
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
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise EventError(f"event.{key} must be a string")


def _opt_time(value: Any) -> float | None:
    """Event time as Unix seconds: a number, or ISO 8601 text with an offset (or `Z`)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
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
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
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
        return {
            "uuid": self.uuid,
            "source_kind": self.source_kind,
            "source_id": self.source_id,
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "tactic": self.tactic,
            "technique_id": self.technique_id,
            "sub_technique_id": self.sub_technique_id,
            "confidence": self.confidence,
            "evidence": dict(self.evidence),
            "attack_release": self.attack_release,
            "attacker_uuid": self.attacker_uuid,
            "session_id": self.session_id,
            "decky_id": self.decky_id,
            "src_ip": self.src_ip,
            "sensor": self.sensor,
        }
