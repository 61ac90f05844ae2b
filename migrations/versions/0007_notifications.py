"""Notifications: per-room notification levels, and the mentions behind the mention counts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_levels",
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("level", sa.String(8), nullable=False),
    )
    op.create_index("ix_notification_levels_room", "notification_levels", ["room_id"])
    op.create_table(
        "mentions",
        sa.Column("room_id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
        ),
        # Trimmed with their message.
        sa.ForeignKeyConstraint(
            ["room_id", "seq"], ["messages.room_id", "messages.seq"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_mentions_user", "mentions", ["user_id", "room_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_mentions_user", "mentions")
    op.drop_table("mentions")
    op.drop_index("ix_notification_levels_room", "notification_levels")
    op.drop_table("notification_levels")
