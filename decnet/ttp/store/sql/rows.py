"""What the repository reads and writes, as plain values (no SQLAlchemy rows leak out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from decnet.vocabulary import ChangeKind, RuleState


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed revision and the identity of the database that holds it.

    `identity` is the random `database_id` the migration wrote, and on a SQLite file the
    file's device and inode too: another database has another identity.
    """

    revision: int
    identity: str


@dataclass(frozen=True, slots=True)
class StoredRule:
    """One `ttp_rule` row."""

    rule_id: str
    rule_version: int
    source_path: str | None
    yaml_content: str
    updated_at: datetime
    updated_by: str | None
    revision: int


@dataclass(frozen=True, slots=True)
class StoredState:
    """One `ttp_rule_state` row: the state and the revision that wrote it."""

    revision: int
    state: RuleState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every rule and state, and the revision they are at least as new as."""

    revision: int
    rules: list[StoredRule]
    states: dict[str, StoredState]
    #: The database's identity (see `Head`).
    identity: str = "-"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One change-log entry joined with the current rows of its rule."""

    revision: int
    rule_id: str
    change_kind: ChangeKind
    rule: StoredRule | None
    state: StoredState | None
    #: the identity of the database the entry was read from (`RuleRepository.head`)
    database: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """The `ttp_master_lease` row."""

    holder: str | None
    token: int
    heartbeat: int
    acquired_at: datetime | None
    heartbeat_at: datetime | None


@dataclass(frozen=True, slots=True)
class Fence:
    """Proof of holding the master lease, checked inside each fenced write."""

    holder: str
    token: int


@dataclass(frozen=True, slots=True)
class RuleWrite:
    """Result of a definition write: its revision and the rule's state at that revision."""

    revision: int
    state: RuleState


def state_of(row: Any) -> RuleState:
    """The `RuleState` of a row holding the `ttp_rule_state` columns."""
    return RuleState(state=row.state, confidence_max=row.confidence_max,
                     expires_at=row.expires_at, reason=row.reason, set_by=row.set_by,
                     set_at=row.set_at)
