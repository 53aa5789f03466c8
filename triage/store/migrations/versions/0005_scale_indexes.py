"""scale: the recurring jobs read indexes of what is new, not the history (issue 16)

Partial indexes hold only the rows a recurring job looks for: mentions not analysed yet (a new
`mention.analyzed` flag) and open cases. Repeat-contact lookups get an index on
(author_handle, platform, created_at, id), which replaces the one on author_handle alone; new drafts
find the latest sent replies on (status, sent_at); the report and spike checks find their own
audit events by action; `connectors list` reads `connector_state.mention_count` (kept by
save_batch) instead of counting the mention table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The same conditions as triage/store/tables.py, as each database writes them.
UNANALYZED = {"sqlite_where": sa.text("analyzed = 0"), "postgresql_where": sa.text("NOT analyzed")}
OPEN = "status IN ('new', 'posted', 'claimed', 'escalated')"


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


# No batch_alter_table here: on SQLite it may copy a table into a new one and drop the old,
# and with foreign keys on, dropping `mention` deletes every analysis, draft and case (ON DELETE
# CASCADE). SQLite adds and drops these columns in place (ALTER TABLE, 3.35 and later).


def upgrade() -> None:
    op.add_column(
        "mention", sa.Column("analyzed", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.drop_index("ix_mention_author_handle", table_name="mention")
    mention = sa.table("mention", sa.column("id"), sa.column("analyzed", sa.Boolean))
    analysis = sa.table("analysis", sa.column("mention_id"))
    op.execute(
        mention.update()
        .where(mention.c.id.in_(sa.select(analysis.c.mention_id)))
        .values(analyzed=True)
    )
    op.create_index("ix_mention_unanalyzed", "mention", ["id"], unique=False, **UNANALYZED)
    op.create_index(
        "ix_mention_author",
        "mention",
        ["author_handle", "platform", "created_at", "id"],
        unique=False,
    )
    op.create_index("ix_care_case_open", "care_case", ["id"], unique=False, **_where(OPEN))
    op.create_index("ix_audit_event_action", "audit_event", ["action"], unique=False)
    op.create_index("ix_outbound_reply_sent", "outbound_reply", ["status", "sent_at"], unique=False)

    op.add_column(
        "connector_state",
        sa.Column("mention_count", sa.Integer(), server_default="0", nullable=False),
    )
    state = sa.table("connector_state", sa.column("name"), sa.column("mention_count"))
    stored = sa.table("mention", sa.column("source"))
    op.execute(
        state.update().values(
            mention_count=sa.select(sa.func.count())
            .select_from(stored)
            .where(stored.c.source == state.c.name)
            .scalar_subquery()
        )
    )


def downgrade() -> None:
    op.drop_column("connector_state", "mention_count")
    op.drop_index("ix_outbound_reply_sent", table_name="outbound_reply")
    op.drop_index("ix_audit_event_action", table_name="audit_event")
    op.drop_index("ix_care_case_open", table_name="care_case", **_where(OPEN))
    op.drop_index("ix_mention_author", table_name="mention")
    op.drop_index("ix_mention_unanalyzed", table_name="mention", **UNANALYZED)
    op.create_index("ix_mention_author_handle", "mention", ["author_handle"], unique=False)
    op.drop_column("mention", "analyzed")
