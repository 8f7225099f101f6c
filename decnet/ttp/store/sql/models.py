"""SQLAlchemy models of the database store. The migrations create the same schema.

- `ttp_rule`: one row per rule definition (the exact YAML text), and its stored form
  (what workers load fast; see `decnet.ttp.rules.stored_form`) with the compiler that
  wrote it.
- `ttp_rule_state`: one row per rule with a non-default operator state.
- `ttp_rule_scoped_state`: one row per rule and scope key with a scoped state.
- `ttp_state_history`: the append-only audit log of state changes, pruned by age.
- `ttp_api_token`: the admin API's bearer tokens, by name (SHA-256 only).
- `ttp_revision`: one row (`id = 1`) holding the last revision handed out and the
  database's random identity (`database_id`, written by the migration). Every write
  bumps it first, in its own transaction; the row lock serializes writers, so
  revisions become visible in commit order without gaps.
- `ttp_change_log`: one entry per revision (rule id and kind), pruned to a bounded
  tail; readers follow it by revision number, never by timestamp.
- `ttp_master_lease`: one row (`id = 1`) naming the master allowed to sync
  definitions; heartbeat counters (not clocks) decide when it went stale.

Identifiers compared for equality (`rule_id`, the lease `holder`) are case-sensitive on
every database: see `identifier()` (MariaDB/MySQL default to a case-insensitive collation).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from decnet.ttp.store.sql.types import UTCDateTime, identifier, long_text

RULE_ID_LENGTH = 64
HOLDER_LENGTH = 255
SCOPE_KEY_LENGTH = 512


class Base(DeclarativeBase):
    pass


class RuleRow(Base):
    __tablename__ = "ttp_rule"

    rule_id: Mapped[str] = mapped_column(identifier(RULE_ID_LENGTH), primary_key=True)
    rule_version: Mapped[int] = mapped_column(Integer, nullable=False)
    source_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    yaml_content: Mapped[str] = mapped_column(long_text(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    compiled_form: Mapped[str | None] = mapped_column(long_text(), nullable=True)
    compiled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


class StateRow(Base):
    __tablename__ = "ttp_rule_state"

    rule_id: Mapped[str] = mapped_column(identifier(RULE_ID_LENGTH), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    confidence_max: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    set_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    set_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ScopedStateRow(Base):
    __tablename__ = "ttp_rule_scoped_state"

    rule_id: Mapped[str] = mapped_column(identifier(RULE_ID_LENGTH), primary_key=True)
    scope_key: Mapped[str] = mapped_column(identifier(SCOPE_KEY_LENGTH), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    confidence_max: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    set_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    set_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)


class HistoryRow(Base):
    __tablename__ = "ttp_state_history"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                    primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(identifier(RULE_ID_LENGTH), nullable=False,
                                         index=True)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    scope_key: Mapped[str | None] = mapped_column(identifier(SCOPE_KEY_LENGTH), nullable=True)
    old_value: Mapped[str | None] = mapped_column(long_text(), nullable=True)
    new_value: Mapped[str | None] = mapped_column(long_text(), nullable=True)
    changed_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    via: Mapped[str | None] = mapped_column(String(255), nullable=True)


class TokenRow(Base):
    __tablename__ = "ttp_api_token"

    name: Mapped[str] = mapped_column(identifier(RULE_ID_LENGTH), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RevisionRow(Base):
    __tablename__ = "ttp_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    database_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ChangeLogRow(Base):
    __tablename__ = "ttp_change_log"

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    rule_id: Mapped[str] = mapped_column(identifier(RULE_ID_LENGTH), nullable=False)
    change_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


class MasterLeaseRow(Base):
    __tablename__ = "ttp_master_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(identifier(HOLDER_LENGTH), nullable=True)
    token: Mapped[int] = mapped_column(BigInteger, nullable=False)
    heartbeat: Mapped[int] = mapped_column(BigInteger, nullable=False)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
