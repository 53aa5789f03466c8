"""outbound replies: each reply under its idempotency key, so a retry never posts twice

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbound_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("mention_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["care_case.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["mention_id"], ["mention.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
    )
    with op.batch_alter_table("outbound_reply", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_outbound_reply_mention_id"), ["mention_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_outbound_reply_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbound_reply", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbound_reply_status"))
        batch_op.drop_index(batch_op.f("ix_outbound_reply_mention_id"))
    op.drop_table("outbound_reply")
