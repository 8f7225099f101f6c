"""What the repository reads and writes, as plain values (no SQLAlchemy rows leak out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from decnet.vocabulary import ChangeKind, RuleState, Scope, ScopedState


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
    """One `ttp_rule` row (a snapshot leaves out stored forms its reader cannot use)."""

    rule_id: str
    rule_version: int
    source_path: str | None
    yaml_content: str
    updated_at: datetime
    updated_by: str | None
    revision: int
    compiled_form: str | None = None
    compiled_by: str | None = None


@dataclass(frozen=True, slots=True)
class StoredState:
    """One `ttp_rule_state` row: the state and the revision that wrote it."""

    revision: int
    state: RuleState


@dataclass(frozen=True, slots=True)
class StoredScoped:
    """The scoped states of one rule (by scope key) and the newest revision among them
    and the change that produced them."""

    revision: int
    states: tuple[ScopedState, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every rule and state, and the revision they are at least as new as."""

    revision: int
    rules: list[StoredRule]
    states: dict[str, StoredState]
    #: The database's identity (see `Head`).
    identity: str = "-"
    #: rule_id -> its scoped states (rules without any left out).
    scoped: dict[str, StoredScoped] | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One change-log entry joined with the current rows of its rule."""

    revision: int
    rule_id: str
    change_kind: ChangeKind
    rule: StoredRule | None
    state: StoredState | None
    #: For a scoped-state entry: the rule's scoped states now.
    scoped: StoredScoped | None = None
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
class StoredContent:
    """What the master compares with a rule file: version, text, and which compiler
    wrote the row's stored form (None: none did)."""

    rule_version: int
    yaml_content: str
    compiled_by: str | None


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


def scoped_of(rows: Any) -> dict[str, list[ScopedState]]:
    """`rule_id -> [ScopedState]` (by scope key) of `ttp_rule_scoped_state` rows."""
    found: dict[str, list[tuple[str, ScopedState]]] = {}
    for row in rows:
        found.setdefault(row.rule_id, []).append(
            (row.scope_key, ScopedState(Scope.parse(row.scope_key), state_of(row))))
    return {rule_id: [item for _key, item in sorted(items, key=lambda kv: kv[0])]
            for rule_id, items in found.items()}
