"""Every statement of the database store, built once.

Their compiled form is cached by SQLAlchemy; building them per call would cost more
than SQLite's own work. Bound names of WHERE clauses start with `b_`.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import String, bindparam, case, delete, func, insert, null, select, update

from decnet.ttp.constants import NOTIFY_CHANNEL
from decnet.ttp.store.sql.models import (
    ChangeLogRow,
    HistoryRow,
    MasterLeaseRow,
    RevisionRow,
    RuleRow,
    ScopedStateRow,
    StateRow,
)
from decnet.ttp.store.sql.types import UTCDateTime

STATE_TABLE: Final = StateRow.__table__

HEAD: Final = select(RevisionRow.revision).where(RevisionRow.id == 1)
HEAD_AND_ID: Final = select(RevisionRow.revision, RevisionRow.database_id).where(
    RevisionRow.id == 1)
BUMP: Final = update(RevisionRow).where(RevisionRow.id == 1).values(
    revision=RevisionRow.revision + 1)
BUMP_RETURNING: Final = BUMP.returning(RevisionRow.revision)
LOG_INSERT: Final = insert(ChangeLogRow)
LOG_PRUNE: Final = delete(ChangeLogRow).where(ChangeLogRow.revision <= bindparam("b_upto"))
LOG_OLDEST: Final = select(func.min(ChangeLogRow.revision))
NOTIFY: Final = select(func.pg_notify(NOTIFY_CHANNEL, bindparam("b_payload")))

RULE_CONTENT: Final = select(RuleRow.rule_version, RuleRow.yaml_content).where(
    RuleRow.rule_id == bindparam("b_rule_id"))
RULE_CONTENTS: Final = select(RuleRow.rule_id, RuleRow.rule_version, RuleRow.yaml_content,
                              RuleRow.compiled_by)
RULE_EXISTS: Final = select(RuleRow.revision).where(RuleRow.rule_id == bindparam("b_rule_id"))
#: Every rule, with its stored form where the reading compiler (`b_compiler`) wrote one.
RULES: Final = select(
    RuleRow.rule_id, RuleRow.rule_version, RuleRow.source_path, RuleRow.yaml_content,
    RuleRow.updated_at, RuleRow.updated_by, RuleRow.revision,
    case((RuleRow.compiled_by == bindparam("b_compiler", type_=String()),
          RuleRow.compiled_form), else_=null()).label("compiled_form"),
    RuleRow.compiled_by).order_by(RuleRow.rule_id)
RULE_TEXTS: Final = select(RuleRow.rule_id, RuleRow.yaml_content).where(
    RuleRow.rule_id.in_(bindparam("b_rule_ids", expanding=True)))
#: The stored form of an unchanged definition, replaced without a new revision.
FORM_REFRESH: Final = update(RuleRow).where(
    RuleRow.rule_id == bindparam("b_rule_id"), RuleRow.rule_version == bindparam("b_version"),
    RuleRow.yaml_content == bindparam("b_yaml"))
RULE_INSERT: Final = insert(RuleRow)
RULE_UPDATE: Final = update(RuleRow).where(RuleRow.rule_id == bindparam("b_rule_id"))
RULE_DELETE: Final = delete(RuleRow).where(RuleRow.rule_id == bindparam("b_rule_id"))

STATES: Final = select(STATE_TABLE)
STATE_READ: Final = select(STATE_TABLE).where(StateRow.rule_id == bindparam("b_rule_id"))
STATE_INSERT: Final = insert(StateRow)
STATE_UPDATE: Final = update(StateRow).where(StateRow.rule_id == bindparam("b_rule_id"))
STATE_DELETE: Final = delete(StateRow).where(StateRow.rule_id == bindparam("b_rule_id"))
STATE_REVERT: Final = delete(StateRow).where(
    StateRow.rule_id == bindparam("b_rule_id"),
    StateRow.expires_at == bindparam("b_expires_at", type_=UTCDateTime()))

SCOPED_TABLE: Final = ScopedStateRow.__table__
SCOPED_ALL: Final = select(SCOPED_TABLE)
SCOPED_READ: Final = select(SCOPED_TABLE).where(
    ScopedStateRow.rule_id == bindparam("b_rule_id"))
SCOPED_OF_RULES: Final = select(SCOPED_TABLE).where(
    ScopedStateRow.rule_id.in_(bindparam("b_rule_ids", expanding=True)))
SCOPED_ONE: Final = select(SCOPED_TABLE).where(
    ScopedStateRow.rule_id == bindparam("b_rule_id"),
    ScopedStateRow.scope_key == bindparam("b_scope_key"))
SCOPED_INSERT: Final = insert(ScopedStateRow)
SCOPED_UPDATE: Final = update(ScopedStateRow).where(
    ScopedStateRow.rule_id == bindparam("b_rule_id"),
    ScopedStateRow.scope_key == bindparam("b_scope_key"))
SCOPED_DELETE: Final = delete(ScopedStateRow).where(
    ScopedStateRow.rule_id == bindparam("b_rule_id"),
    ScopedStateRow.scope_key == bindparam("b_scope_key"))
SCOPED_COUNT: Final = select(func.count()).select_from(ScopedStateRow).where(
    ScopedStateRow.rule_id == bindparam("b_rule_id"))

HISTORY_INSERT: Final = insert(HistoryRow)
HISTORY_PRUNE: Final = delete(HistoryRow).where(
    HistoryRow.changed_at < bindparam("b_before", type_=UTCDateTime()))
HISTORY_SELECT: Final = select(HistoryRow).order_by(HistoryRow.id)

#: The tail's read: built once, so each wake-up only binds its three numbers.
CHANGES_SINCE: Final = (
    select(ChangeLogRow.revision, ChangeLogRow.rule_id, ChangeLogRow.change_kind,
           RuleRow.rule_version, RuleRow.source_path, RuleRow.yaml_content,
           RuleRow.updated_at, RuleRow.updated_by,
           RuleRow.revision.label("rule_revision"), RuleRow.compiled_form,
           RuleRow.compiled_by,
           StateRow.state, StateRow.confidence_max, StateRow.expires_at,
           StateRow.reason, StateRow.set_by, StateRow.set_at,
           StateRow.revision.label("state_revision"),
           # the database the entries come from, in the same statement: a notification
           # from a recreated database must not be read as the old one's next revision
           select(RevisionRow.database_id).where(RevisionRow.id == 1)
           .scalar_subquery().label("database_id"))
    .select_from(ChangeLogRow)
    .outerjoin(RuleRow, RuleRow.rule_id == ChangeLogRow.rule_id)
    .outerjoin(StateRow, StateRow.rule_id == ChangeLogRow.rule_id)
    .where(ChangeLogRow.revision > bindparam("b_after"),
           ChangeLogRow.revision <= bindparam("b_upto"))
    .order_by(ChangeLogRow.revision)
    .limit(bindparam("b_limit"))
)

LEASE_READ: Final = select(MasterLeaseRow.__table__).where(MasterLeaseRow.id == 1)
#: Inside a fenced write: prove the fence still holds the lease (and count a heartbeat).
LEASE_CHECK: Final = (
    update(MasterLeaseRow)
    .where(MasterLeaseRow.id == 1, MasterLeaseRow.holder == bindparam("b_holder"),
           MasterLeaseRow.token == bindparam("b_token"))
    .values(heartbeat=MasterLeaseRow.heartbeat + 1,
            heartbeat_at=bindparam("heartbeat_at", type_=UTCDateTime())))
LEASE_ACQUIRE: Final = (
    update(MasterLeaseRow)
    .where(MasterLeaseRow.id == 1, MasterLeaseRow.token == bindparam("b_token"),
           MasterLeaseRow.heartbeat == bindparam("b_heartbeat"))
    .values(holder=bindparam("holder"), token=MasterLeaseRow.token + 1,
            heartbeat=MasterLeaseRow.heartbeat + 1,
            acquired_at=bindparam("acquired_at", type_=UTCDateTime()),
            heartbeat_at=bindparam("heartbeat_at", type_=UTCDateTime())))
LEASE_RELEASE: Final = (
    update(MasterLeaseRow)
    .where(MasterLeaseRow.id == 1, MasterLeaseRow.holder == bindparam("b_holder"),
           MasterLeaseRow.token == bindparam("b_token"))
    .values(holder=None, heartbeat=MasterLeaseRow.heartbeat + 1))

