"""Revoked sessions (a logout ends the session on every node), and usernames unique without
regard to case.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chat.errors import MigrationRefused

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _refuse_case_twins()
    op.create_table(
        "revoked_sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_revoked_sessions_expires_at", "revoked_sessions", ["expires_at"])
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)


def _refuse_case_twins() -> None:
    """Accounts whose names differ only in case cannot both keep their names: stop, naming them,
    so an operator renames one (the server does not pick a loser by itself)."""
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT username FROM users WHERE lower(username) IN "
                "(SELECT lower(username) FROM users GROUP BY lower(username) "
                "HAVING count(*) > 1) ORDER BY lower(username), username"
            )
        )
        .scalars()
        .all()
    )
    if not rows:
        return
    groups: dict[str, list[str]] = {}
    for name in rows:
        groups.setdefault(name.lower(), []).append(name)
    named = "; ".join(" and ".join(repr(n) for n in group) for group in groups.values())
    raise MigrationRefused(
        "usernames must be unique regardless of case, but these accounts differ only in case: "
        f"{named}. Rename all but one of each, then start again."
    )


def downgrade() -> None:
    op.drop_index("uq_users_username_lower", "users")
    op.drop_index("ix_revoked_sessions_expires_at", "revoked_sessions")
    op.drop_table("revoked_sessions")
