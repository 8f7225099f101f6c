"""Database identity: a random id in the `ttp_revision` row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

A worker compares the id on every poll: a database replaced under a running swarm
(a SQLite file restored by rename, a database dropped and migrated again) has another
id, so the worker reloads from it instead of following a database nobody writes to.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ttp_revision") as batch:
        batch.add_column(sa.Column("database_id", sa.String(32), nullable=True))
    revision_table = sa.table("ttp_revision", sa.column("id", sa.Integer()),
                              sa.column("database_id", sa.String(32)))
    op.execute(revision_table.update().where(revision_table.c.id == 1)
               .values(database_id=uuid.uuid4().hex))


def downgrade() -> None:
    with op.batch_alter_table("ttp_revision") as batch:
        batch.drop_column("database_id")
