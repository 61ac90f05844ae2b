"""Room events: edits, deletions by their authors, reactions, replies, direct conversations.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (see 0002: batch mode would cascade-drop on SQLite).
    op.add_column("messages", sa.Column("reply_to", sa.BigInteger, nullable=True))
    op.add_column("messages", sa.Column("edited_at", sa.BigInteger, nullable=True))
    op.add_column("messages", sa.Column("changed_seq", sa.BigInteger, nullable=True))
    # Partial: a plain message (never changed) costs its insert no entry here.
    op.create_index(
        "ix_messages_changed",
        "messages",
        ["room_id", "changed_seq"],
        sqlite_where=sa.text("changed_seq IS NOT NULL"),
        postgresql_where=sa.text("changed_seq IS NOT NULL"),
    )
    op.add_column("rooms", sa.Column("dm_key", sa.String(32), nullable=True))
    op.create_index("uq_rooms_dm_key", "rooms", ["dm_key"], unique=True)
    op.create_table(
        "reactions",
        sa.Column("room_id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("emoji", sa.String(64), primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        # Trimmed with their message.
        sa.ForeignKeyConstraint(
            ["room_id", "seq"], ["messages.room_id", "messages.seq"], ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("reactions")
    op.drop_index("uq_rooms_dm_key", "rooms")
    op.drop_column("rooms", "dm_key")
    op.drop_index("ix_messages_changed", "messages")
    op.drop_column("messages", "changed_seq")
    op.drop_column("messages", "edited_at")
    op.drop_column("messages", "reply_to")
