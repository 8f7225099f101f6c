"""JSON forms of `RuleState` and `RuleChange`, for the bus, the CLI and the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from decnet.ttp.rules.compiled import CompiledRule
from decnet.vocabulary import HistoryEntry, RuleChange, RuleState, ScopedState, iso


def state_to_dict(state: RuleState) -> dict[str, Any]:
    return {
        "state": state.state.value,
        "confidence_max": state.confidence_max,
        "expires_at": iso(state.expires_at),
        "reason": state.reason,
        "set_by": state.set_by,
        "set_at": iso(state.set_at),
    }


def state_from_dict(data: dict[str, Any]) -> RuleState:
    return RuleState(
        state=data.get("state", "enabled"),
        confidence_max=data.get("confidence_max"),
        expires_at=_parse(data.get("expires_at")),
        reason=data.get("reason"),
        set_by=data.get("set_by"),
        set_at=_parse(data.get("set_at")),
    )


def scoped_to_dict(scoped: ScopedState) -> dict[str, Any]:
    """A scoped state: its scope (key and values per dimension) and the state."""
    return {"scope": scoped.scope.key, "deckies": sorted(scoped.scope.deckies),
            "sensors": sorted(scoped.scope.sensors), **state_to_dict(scoped.state)}


def history_to_dict(entry: HistoryEntry) -> dict[str, Any]:
    """One state-history entry (`state history --json`, `GET /api/v1/history`)."""
    return {"rule_id": entry.rule_id, "action": entry.action.value, "scope": entry.scope,
            "old": None if entry.old is None else state_to_dict(entry.old),
            "new": None if entry.new is None else state_to_dict(entry.new),
            "by": entry.by, "reason": entry.reason, "at": entry.at.isoformat(),
            "via": entry.via}


def change_to_bytes(change: RuleChange) -> bytes:
    """Bus message body for one change: ids and state, never the rule's content."""
    body: dict[str, Any] = {"change_kind": change.change_kind, "rule_id": change.rule_id}
    value = change.new_value
    if isinstance(value, CompiledRule):
        body["rule_version"] = value.rule_version
        body["state"] = state_to_dict(value.state)
    elif isinstance(value, RuleState):
        body["state"] = state_to_dict(value)
    elif isinstance(value, tuple):  # scoped states: no "state" key, never mistaken for one
        body["scopes"] = [scoped_to_dict(item) for item in value]
    return orjson.dumps(body)



def _parse(text: Any) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(str(text))
