"""The stored form of each rule: what workers load instead of parsing the YAML again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

`ttp_rule.compiled_form` holds the parsed document and the patterns' translations as
JSON (data, never compiled objects; see `decnet.ttp.rules.stored_form`) and
`compiled_by` the compiler that wrote it. Existing rows keep both empty: workers
compile their YAML as before until the master writes the form (on its next
reconcile, without a new revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from decnet.ttp.store.sql.types import long_text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ttp_rule") as batch:
        batch.add_column(sa.Column("compiled_form", long_text(), nullable=True))
        batch.add_column(sa.Column("compiled_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ttp_rule") as batch:
        batch.drop_column("compiled_by")
        batch.drop_column("compiled_form")
