"""Password resets by an administrator (admin page) or an operator (`python -m chat
reset-password NAME`): a temporary password, which must be changed at the next login, and every
session of the user ended."""

from __future__ import annotations

import secrets

from chat.models import User
from chat.storage.store import Store
from chat.web.passwords import PasswordHasher

TEMPORARY_PASSWORD_BYTES = 12  # 16 URL-safe characters


def temporary_password() -> str:
    return secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)


async def reset_password(store: Store, hasher: PasswordHasher, user: User) -> str:
    """Give `user` a new temporary password and end their sessions; return the password, to be
    handed over once (it is stored only as its hash)."""
    password = temporary_password()
    await store.set_password_hash(user.id, await hasher.hash(password), temporary=True)
    await store.bump_session_version(user.id)
    return password
