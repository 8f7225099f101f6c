"""State history kept in memory (the filesystem store), and the limits every backend
applies to scoped states."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta

from decnet.ttp.constants import (
    MAX_SCOPED_STATES_PER_RULE,
    STATE_HISTORY_MEMORY,
    STATE_HISTORY_RETENTION_DAYS,
)
from decnet.vocabulary import Audit, HistoryEntry, InvalidScopeError, RuleState, Scope


def check_scoped_room(current: Mapping[str, object], scope: Scope) -> None:
    """Refuse a new scope beyond `MAX_SCOPED_STATES_PER_RULE` (each costs every event)."""
    if scope.key not in current and len(current) >= MAX_SCOPED_STATES_PER_RULE:
        raise InvalidScopeError(f"a rule carries at most {MAX_SCOPED_STATES_PER_RULE} "
                                "scoped states; clear some first")


class MemoryHistory:
    """An append-only, bounded list of `HistoryEntry`: the newest `capacity` entries no
    older than `retention`."""

    def __init__(self, *, capacity: int = STATE_HISTORY_MEMORY,
                 retention: timedelta = timedelta(days=STATE_HISTORY_RETENTION_DAYS)) -> None:
        self._entries: deque[HistoryEntry] = deque(maxlen=capacity)
        self.retention = retention

    def record(self, rule_id: str, scope: str | None, old: RuleState | None,
               new: RuleState | None, audit: Audit, at: datetime) -> None:
        self._entries.append(HistoryEntry(rule_id, audit.action, scope, old, new, audit.by,
                                          audit.reason, at, audit.via))
        while self._entries and self._entries[0].at < at - self.retention:
            self._entries.popleft()

    def select(self, rule_id: str | None, since: datetime | None, limit: int | None,
               now: datetime) -> list[HistoryEntry]:
        oldest = now - self.retention
        found = [entry for entry in self._entries
                 if entry.at >= oldest and (rule_id is None or entry.rule_id == rule_id)
                 and (since is None or entry.at >= since)]
        return found if limit is None else found[-limit:]
