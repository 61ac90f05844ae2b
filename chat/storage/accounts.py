"""Accounts: users, their sessions (revocations), bans, and the moderation log."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from chat.errors import InvalidName, NameTaken
from chat.models import USERNAME_RE, USERNAME_RULE, ModerationEntry, User
from chat.storage.base import StoreBase, user_from_row
from chat.storage.schema import moderation_log, revoked_sessions, users
from chat.storage.statements import SESSION_USER, now_ms


class Accounts(StoreBase):
    async def create_user(self, username: str, password_hash: str, *, admin: bool = False) -> User:
        """Create an account; the very first account becomes the admin."""
        if not USERNAME_RE.match(username):
            raise InvalidName(USERNAME_RULE)
        async with self._write() as conn:
            first = (await conn.execute(select(func.count()).select_from(users))).scalar_one() == 0
            try:
                result = await conn.execute(
                    insert(users).values(
                        username=username,
                        password_hash=password_hash,
                        is_admin=admin or first,
                        created_at=now_ms(),
                    )
                )
            except IntegrityError:
                raise NameTaken(f"The username {username!r} is taken.") from None
            user_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            row = (await conn.execute(select(users).where(users.c.id == user_id))).one()
        return user_from_row(row)

    async def user_by_name(self, username: str) -> User | None:
        """The account with this name, whatever its case."""
        query = select(users).where(func.lower(users.c.username) == username.lower())
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else user_from_row(row)

    async def session_user(self, user_id: int, session_id: str) -> User | None:
        """The user of a session cookie, or None if there is no such user or that session was
        revoked (a logout): one read, made once per request or upgrade."""
        params = {"user_id": user_id, "session_id": session_id}
        if self._fast is not None:
            row = await self._fast.one(*self.sql(SESSION_USER, params))
        else:
            async with self.engine.connect() as conn:
                row = (await conn.execute(SESSION_USER, params)).first()
        return None if row is None or row.revoked else user_from_row(row)

    async def revoke_session(self, session_id: str, expires_at: int) -> None:
        """End one session everywhere, until `expires_at` (ms); forget expired revocations."""
        try:
            async with self._write() as conn:
                await conn.execute(
                    revoked_sessions.delete().where(revoked_sessions.c.expires_at < now_ms())
                )
                await conn.execute(
                    insert(revoked_sessions).values(session_id=session_id, expires_at=expires_at)
                )
        except IntegrityError:
            pass  # revoked already (the same session logged out twice at once)

    async def set_admin(self, user_id: int, admin: bool) -> None:
        async with self._write() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(is_admin=admin))

    async def set_password_hash(
        self, user_id: int, password_hash: str, *, temporary: bool = False
    ) -> None:
        """A new password; `temporary` (an administrator's reset) must be changed at the next
        login. Either way, a password set here is the one the user now has."""
        async with self._write() as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(password_hash=password_hash, must_change_password=temporary)
            )

    async def bump_session_version(self, user_id: int) -> int:
        """Invalidate every session of the user issued so far; return the new version."""
        async with self._write() as conn:
            version = (
                await conn.execute(
                    update(users)
                    .where(users.c.id == user_id)
                    .values(session_version=users.c.session_version + 1)
                    .returning(users.c.session_version)
                )
            ).scalar_one()
        return int(version)

    async def set_banned(self, user_id: int, banned: bool) -> None:
        async with self._write() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(banned=banned))

    async def banned_users(self) -> list[User]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(users).where(users.c.banned == True).order_by(users.c.username)  # noqa: E712
                )
            ).all()
        return [user_from_row(r) for r in rows]

    async def has_users(self) -> bool:
        """Whether any account exists (none: the first run, which creates the admin)."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(users.c.id).limit(1))).first() is not None

    async def admin_names(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(users.c.username)
                    .where(users.c.is_admin == True)  # noqa: E712
                    .order_by(users.c.username)
                )
            ).all()
        return [r.username for r in rows]

    # --- moderation log ---

    async def log_moderation(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        room: str | None = None,
        seq: int | None = None,
        detail: str = "",
    ) -> None:
        async with self._write() as conn:
            await conn.execute(
                insert(moderation_log).values(
                    ts=now_ms(),
                    actor=actor,
                    action=action,
                    target=target,
                    room=room,
                    seq=seq,
                    detail=detail[:200],
                )
            )

    async def moderation_entries(self, limit: int = 100) -> list[ModerationEntry]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(moderation_log).order_by(moderation_log.c.id.desc()).limit(limit)
                )
            ).all()
        return [
            ModerationEntry(
                id=r.id,
                ts=r.ts,
                actor=r.actor,
                action=r.action,
                target=r.target,
                room=r.room,
                seq=r.seq,
                detail=r.detail,
            )
            for r in rows
        ]
