"""Session versions and bans on users, private rooms and their members, soft-deleted messages,
the moderation log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode: on SQLite, batch mode copies the table and drops the
    # old one, and with foreign keys on, dropping `users` cascades into every message.
    op.add_column(
        "users", sa.Column("session_version", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column(
        "users", sa.Column("banned", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column(
        "rooms", sa.Column("is_private", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.add_column(
        "messages", sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_table(
        "room_members",
        sa.Column(
            "room_id",
            sa.Integer,
            sa.ForeignKey("rooms.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("added_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_room_members_user", "room_members", ["user_id"])
    op.create_table(
        "moderation_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        # Names, not foreign keys: the log must outlive the accounts it mentions.
        sa.Column("actor", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("target", sa.String(32), nullable=True),
        sa.Column("room", sa.String(32), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("detail", sa.String(200), nullable=False, server_default=""),
    )
    op.create_index("ix_moderation_log_ts", "moderation_log", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_moderation_log_ts", "moderation_log")
    op.drop_table("moderation_log")
    op.drop_index("ix_room_members_user", "room_members")
    op.drop_table("room_members")
    # SQLite 3.35+ drops a column in place (no table copy, no cascade).
    op.drop_column("messages", "deleted")
    op.drop_column("rooms", "is_private")
    op.drop_column("users", "banned")
    op.drop_column("users", "session_version")
