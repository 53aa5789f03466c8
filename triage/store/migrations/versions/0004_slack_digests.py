"""slack digests: a card held back in a digest message names that digest; outbox by case

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("slack_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f("ix_slack_outbox_digest"), ["digest"], unique=False)
        # The notify cycle asks, about once a second, which new cases have no outbox row yet.
        batch_op.create_index(batch_op.f("ix_slack_outbox_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("slack_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slack_outbox_case_id"))
        batch_op.drop_index(batch_op.f("ix_slack_outbox_digest"))
        batch_op.drop_column("digest")
