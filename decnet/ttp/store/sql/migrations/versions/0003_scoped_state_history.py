"""Scoped states, the state history and the admin API's tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

`ttp_rule_scoped_state` holds the states that apply to some deckies or sensors only (one
row per rule and canonical scope key); `ttp_state_history` is the append-only audit log of
every state change, pruned by age by the writer; `ttp_api_token` holds the admin API's
bearer tokens (their SHA-256, never the token).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from decnet.ttp.store.sql.types import UTCDateTime, identifier, long_text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ttp_rule_scoped_state",
        sa.Column("rule_id", identifier(64), primary_key=True),
        sa.Column("scope_key", identifier(512), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("confidence_max", sa.Float(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("set_by", sa.String(255), nullable=True),
        sa.Column("set_at", UTCDateTime(), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "ttp_state_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("rule_id", identifier(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("scope_key", identifier(512), nullable=True),
        sa.Column("old_value", long_text(), nullable=True),
        sa.Column("new_value", long_text(), nullable=True),
        sa.Column("changed_by", sa.String(255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("via", sa.String(255), nullable=True),
    )
    op.create_index("ix_ttp_state_history_changed_at", "ttp_state_history", ["changed_at"])
    op.create_index("ix_ttp_state_history_rule_id", "ttp_state_history", ["rule_id"])
    op.create_table(
        "ttp_api_token",
        sa.Column("name", identifier(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ttp_api_token")
    op.drop_index("ix_ttp_state_history_rule_id", "ttp_state_history")
    op.drop_index("ix_ttp_state_history_changed_at", "ttp_state_history")
    op.drop_table("ttp_state_history")
    op.drop_table("ttp_rule_scoped_state")
