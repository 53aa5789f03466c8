"""scale: reports and spike checks read rollups, not every mention of their window (issue 16)

`report_hour` counts the analysed mentions per hour they were posted (UTC), source, language,
sentiment and complaint category ('' counts mentions); `report_word` counts, per day, the
negative mentions that have each topic word (in Python: no SQL splits words the way
triage/words.py does); `case_timing` holds, on one narrow row per answered or closed case, what
the care figures read. All three are filled here from what is stored, with the statements that
keep them from now on (queries.rebuild_rollups: as each analysis is stored, as each case is
closed or its reply sent). The expression index `ix_mention_posted` (when posted, else stored;
then id) reads a window's partial hours and days and the CSV's rows; `ix_outbound_reply_sender`
who sent the reply to each answered case.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from triage.store.queries import rebuild_rollups

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KEY = ("hour", "source", "language", "sentiment", "category")


def upgrade() -> None:
    op.create_table(
        "report_hour",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("sentiment", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY),
    )
    op.create_table(
        "report_word",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("word", sa.String(length=100), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "word"),
    )
    op.create_table(
        "case_timing",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("mention_id", sa.Integer(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("priority", sa.String(length=2), nullable=False),
        sa.Column("first_response_seconds", sa.Float(), nullable=True),
        sa.Column("resolution_seconds", sa.Float(), nullable=True),
        sa.Column("agent", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_index(
        "ix_case_timing_posted", "case_timing", ["posted_at", "mention_id"], unique=False
    )
    op.create_index(
        "ix_mention_posted",
        "mention",
        [sa.text("coalesce(created_at, fetched_at)"), "id"],
        unique=False,
    )
    op.create_index(
        "ix_outbound_reply_sender",
        "outbound_reply",
        ["mention_id", "status", "requested_by"],
        unique=False,
    )
    rebuild_rollups(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_outbound_reply_sender", table_name="outbound_reply")
    op.drop_index("ix_mention_posted", table_name="mention")
    op.drop_index("ix_case_timing_posted", table_name="case_timing")
    op.drop_table("case_timing")
    op.drop_table("report_word")
    op.drop_table("report_hour")
