"""The client_ids of recent messages, kept beyond the room's kept history, so that a resend of a
trimmed message is acked as already stored instead of being stored again (issue 18).

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_ids",
        # No foreign keys: a check per stored message for rows that are pruned by age anyway.
        sa.Column("user_id", sa.Integer, primary_key=True),
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("room_id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_client_ids_ts", "client_ids", ["ts"])
    # What the kept history already knows.
    op.execute(
        "INSERT INTO client_ids (user_id, client_id, room_id, seq, ts) "
        "SELECT user_id, client_id, room_id, seq, ts FROM messages WHERE client_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_client_ids_ts", "client_ids")
    op.drop_table("client_ids")
