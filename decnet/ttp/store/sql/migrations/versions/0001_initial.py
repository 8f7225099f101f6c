"""Initial schema: rules, states, the revision counter, the change log, the master lease.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

`rule_id` and the lease `holder` use `identifier()`: case-sensitive on MariaDB/MySQL too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from decnet.ttp.store.sql.types import UTCDateTime, identifier, long_text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ttp_rule",
        sa.Column("rule_id", identifier(64), primary_key=True),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("source_path", sa.String(1024), nullable=True),
        sa.Column("yaml_content", long_text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ttp_rule_state",
        sa.Column("rule_id", identifier(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("confidence_max", sa.Float(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("set_by", sa.String(255), nullable=True),
        sa.Column("set_at", UTCDateTime(), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    revision_table = op.create_table(
        "ttp_revision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ttp_change_log",
        sa.Column("revision", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("rule_id", identifier(64), nullable=False),
        sa.Column("change_kind", sa.String(16), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )
    lease_table = op.create_table(
        "ttp_master_lease",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("holder", identifier(255), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    )
    op.bulk_insert(revision_table, [{"id": 1, "revision": 0}])
    op.bulk_insert(lease_table, [{"id": 1, "holder": None, "token": 0, "heartbeat": 0}])


def downgrade() -> None:
    for table in ("ttp_master_lease", "ttp_change_log", "ttp_revision", "ttp_rule_state",
                  "ttp_rule"):
        op.drop_table(table)
