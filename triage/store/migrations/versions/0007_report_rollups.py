"""scale: reports and spike checks read rollups, not every mention of their window (issue 16)

`report_hour` counts the analysed mentions per hour they were posted (UTC), source, language,
sentiment and complaint category ('' counts mentions); it is filled here from the analyses
already stored, and kept from now on in the transaction that stores each analysis, as is
`report_word` (per day, how many negative mentions have each topic word: the report's topics,
filled here in Python, as no SQL splits words the way triage/words.py does).
`case_timing` holds what the care figures read of each answered or closed case (priority, first
response, time to resolution, who answered) on one narrow row, filled here and kept where a case is
closed or its reply sent. The
expression index `ix_mention_posted` (when posted, else stored; then id) reads the mentions of a
window's partial hours, its negative mentions' text and its cases, and the CSV's rows;
`ix_outbound_reply_sender` who sent the reply to each of its answered cases.

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
