"""Files and images attached to messages (issue 16, part b).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "uploader_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("width", sa.Integer, nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("created", sa.BigInteger, nullable=False),
        # A trimmed or removed message takes its files with it.
        sa.ForeignKeyConstraint(
            ["room_id", "seq"], ["messages.room_id", "messages.seq"], ondelete="CASCADE"
        ),
    )
    op.create_index("ix_files_message", "files", ["room_id", "seq"])
    op.create_index("ix_files_uploader", "files", ["uploader_id"])
    op.create_index("ix_files_created", "files", ["created"])
    op.create_table(
        "file_chunks",
        sa.Column(
            "file_id",
            sa.String(32),
            sa.ForeignKey("files.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("file_chunks")
    op.drop_index("ix_files_created", "files")
    op.drop_index("ix_files_uploader", "files")
    op.drop_index("ix_files_message", "files")
    op.drop_table("files")
