"""scale: the SLA check reads only the open cases it still watches; retention reads only the
payloads still kept (issue 16)

A case's `sla_breached` flag is set when its breach ping is queued; the partial index
`ix_care_case_sla_watched` holds the open cases without it, so the 5-second SLA check no longer
walks every open case that breached long ago. Cases whose breach ping was queued before get the
flag here. `ix_mention_raw_kept` orders the mentions whose payload is still kept by age, so
pruning old payloads ([store] keep_raw_days) reads only those.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The same condition as triage/store/tables.py, as each database writes it.
OPEN = "status IN ('new', 'posted', 'claimed', 'escalated')"
WATCHED = {
    "sqlite_where": sa.text(f"{OPEN} AND sla_breached = 0"),
    "postgresql_where": sa.text(f"{OPEN} AND NOT sla_breached"),
}

# No batch_alter_table: see 0005 (SQLite adds and drops the column in place).


def upgrade() -> None:
    op.add_column(
        "care_case",
        sa.Column("sla_breached", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    case = sa.table("care_case", sa.column("id"), sa.column("sla_breached", sa.Boolean))
    outbox = sa.table("slack_outbox", sa.column("key"))
    pinged = sa.exists().where(
        outbox.c.key == sa.literal("sla-breach:") + sa.cast(case.c.id, sa.String)
    )
    op.execute(case.update().where(pinged).values(sla_breached=True))
    op.create_index(
        "ix_care_case_sla_watched",
        "care_case",
        ["id"],
        unique=False,
        **WATCHED,
    )
    kept = {
        "sqlite_where": sa.text("raw IS NOT NULL"),
        "postgresql_where": sa.text("raw IS NOT NULL"),
    }
    op.create_index("ix_mention_raw_kept", "mention", ["fetched_at"], unique=False, **kept)


def downgrade() -> None:
    op.drop_index("ix_mention_raw_kept", table_name="mention")
    op.drop_index("ix_care_case_sla_watched", table_name="care_case")
    op.drop_column("care_case", "sla_breached")
