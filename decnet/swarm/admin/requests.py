"""What a `PUT /api/v1/rules/{rule_id}/state` body may say, checked into values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from decnet.ttp.constants import MAX_STATE_REASON_BYTES
from decnet.vocabulary import (
    InvalidScopeError,
    InvalidStateError,
    RuleState,
    Scope,
    StateName,
    as_utc,
)

#: The longest `for` a state may be set for (a year and a day, as the CLI allows).
MAX_FOR = timedelta(days=366)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d{1,6}(?:\.\d{1,3})?)([smhdw])")
_DURATION = re.compile(r"(?:\d{1,6}(?:\.\d{1,3})?[smhdw]){1,5}")
_FIELDS = {"state", "reason", "confidence_max", "expires_at", "for", "scope"}


class BadRequest(ValueError):
    """A body that cannot be a state change; the message says why (a 422)."""


@dataclass(frozen=True, slots=True)
class StateRequest:
    state: RuleState
    scope: Scope | None


def parse_scope(value: Any) -> Scope | None:
    """`"decky=a,b;sensor=s"`, a list of such strings, or `{"decky": [...], "sensor": [...]}`."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return Scope.parse(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return Scope.parse(value)
        if isinstance(value, dict) and set(value) <= {"decky", "sensor"} and all(
                isinstance(v, list) and all(isinstance(x, str) for x in v)
                for v in value.values()):
            return Scope(frozenset(value.get("decky", ())), frozenset(value.get("sensor", ())))
    except InvalidScopeError as exc:
        raise BadRequest(str(exc)) from None
    raise BadRequest("scope: expected \"decky=ID[,ID…];sensor=NAME[,NAME…]\", a list of "
                     "such strings, or {\"decky\": [...], \"sensor\": [...]}")


def parse_duration_seconds(value: Any) -> timedelta:
    """`for`: seconds (a number) or text such as `4h`, `30m`, `1d`, `1h30m`."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest("for: expected seconds or a duration such as 4h")
    if isinstance(value, str):
        compact = value.strip().lower()
        if not _DURATION.fullmatch(compact) or not compact:
            raise BadRequest("for: expected a duration such as 90s, 30m, 4h, 1d, 1h30m")
        span = sum((timedelta(seconds=float(n) * _UNIT[u])
                    for n, u in _PART.findall(compact)), timedelta())
        if span <= timedelta(0):
            raise BadRequest("for: must be positive")
    else:
        if not 0 < value <= MAX_FOR.total_seconds():
            raise BadRequest(f"for: expected 0 < seconds <= {int(MAX_FOR.total_seconds())}")
        span = timedelta(seconds=float(value))
    if span > MAX_FOR:
        raise BadRequest("for: at most 366 days")
    return span


def parse_state_request(body: Any, now: datetime) -> StateRequest:
    if not isinstance(body, dict):
        raise BadRequest("the body is a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    name = body.get("state")
    if name not in {s.value for s in StateName}:
        raise BadRequest("state: expected enabled, disabled or clipped")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise BadRequest("reason: say why (a non-empty string)")
    if len(reason.encode("utf-8", "surrogatepass")) > MAX_STATE_REASON_BYTES:
        raise BadRequest(f"reason: at most {MAX_STATE_REASON_BYTES} bytes")
    if "\x00" in reason or any(0xD800 <= ord(c) <= 0xDFFF for c in reason):
        raise BadRequest("reason: not valid text")
    ceiling = body.get("confidence_max")
    if ceiling is not None and (isinstance(ceiling, bool)
                                or not isinstance(ceiling, int | float)):
        raise BadRequest("confidence_max: expected a number in [0, 1]")
    if body.get("expires_at") is not None and body.get("for") is not None:
        raise BadRequest("give expires_at or for, not both")
    expires_at = None
    if body.get("for") is not None:
        expires_at = now + parse_duration_seconds(body["for"])
    elif body.get("expires_at") is not None:
        text = body["expires_at"]
        try:
            moment = datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise BadRequest("expires_at: expected an ISO 8601 time with an offset")
        expires_at = as_utc(moment)
        if expires_at <= now:
            raise BadRequest("expires_at: must be in the future")
        if expires_at - now > MAX_FOR:
            raise BadRequest("expires_at: at most 366 days ahead")
    scope = parse_scope(body.get("scope"))
    if scope is not None and name == StateName.ENABLED.value:
        raise BadRequest("a scoped state is disabled or clipped; DELETE it to lift it")
    try:
        state = RuleState(StateName(name), confidence_max=ceiling, expires_at=expires_at,
                          reason=reason)
    except InvalidStateError as exc:
        raise BadRequest(str(exc)) from None
    return StateRequest(state, scope)
