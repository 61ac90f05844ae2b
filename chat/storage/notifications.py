"""Notification levels and mentions: what the notification rules read (chat.notify.rules) and
what the mention counts count. See docs/architecture.md, "Notifications"."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from chat.models import Room, User
from chat.storage.base import StoreBase
from chat.storage.schema import (
    mentions,
    messages,
    notification_levels,
    read_markers,
    room_members,
    rooms,
    users,
)


class Notifications(StoreBase):
    async def notification_level(self, room: Room, user: User) -> str | None:
        """The level this user chose for the room (None: never chose, the default applies)."""
        query = select(notification_levels.c.level).where(
            and_(
                notification_levels.c.room_id == room.id,
                notification_levels.c.user_id == user.id,
            )
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def set_notification_level(self, room: Room, user: User, level: str) -> None:
        where = and_(
            notification_levels.c.room_id == room.id, notification_levels.c.user_id == user.id
        )
        async with self._write() as conn:
            await conn.execute(delete(notification_levels).where(where))
            await conn.execute(
                insert(notification_levels).values(room_id=room.id, user_id=user.id, level=level)
            )

    async def room_levels(self, room_id: int) -> dict[int, str]:
        """The levels chosen in a room by people who are not banned: user id -> level."""
        query = (
            select(notification_levels.c.user_id, notification_levels.c.level)
            .join(users, users.c.id == notification_levels.c.user_id)
            .where(and_(notification_levels.c.room_id == room_id, users.c.banned == False))  # noqa: E712
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {int(r.user_id): str(r.level) for r in rows}

    async def users_named(self, names: Collection[str]) -> dict[str, int]:
        """The people (not banned) with these names, any case: lowercased name -> user id."""
        if not names:
            return {}
        lowered = func.lower(users.c.username)
        query = select(lowered.label("name"), users.c.id).where(
            and_(lowered.in_([n.lower() for n in names]), users.c.banned == False)  # noqa: E712
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {str(r.name): int(r.id) for r in rows}

    async def member_ids(self, room_id: int) -> set[int]:
        query = select(room_members.c.user_id).where(room_members.c.room_id == room_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {int(r.user_id) for r in rows}

    async def names_for(self, room: Room, prefix: str, limit: int) -> list[str]:
        """Up to `limit` names starting with `prefix` (any case) of people a mention in the
        room would reach: anyone not banned in a public room, the members of a private one."""
        query = (
            select(users.c.username)
            .where(
                and_(
                    func.lower(users.c.username).startswith(prefix.lower(), autoescape=True),
                    users.c.banned == False,  # noqa: E712
                )
            )
            .order_by(func.lower(users.c.username))
            .limit(limit)
        )
        if room.is_private:
            query = query.join(room_members, room_members.c.user_id == users.c.id).where(
                room_members.c.room_id == room.id
            )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [str(r.username) for r in rows]

    async def was_deleted(self, room_id: int, seq: int) -> bool:
        """Whether message `seq` was deleted (one that is no longer kept was not)."""
        query = select(messages.c.deleted).where(
            and_(messages.c.room_id == room_id, messages.c.seq == seq)
        )
        async with self.engine.connect() as conn:
            return bool((await conn.execute(query)).scalar_one_or_none())

    async def add_mentions(self, room_id: int, seq: int, user_ids: Collection[int]) -> None:
        """Remember who message `seq` mentions. A message trimmed or gone meanwhile has nothing
        to count: the foreign key refuses the rows, and that is the answer."""
        if not user_ids:
            return
        rows = [{"room_id": room_id, "seq": seq, "user_id": u} for u in sorted(user_ids)]
        try:
            async with self._write() as conn:
                await conn.execute(insert(mentions), rows)
        except IntegrityError:
            pass

    async def mention_counts(self, user: User) -> dict[str, int]:
        """Per room, the kept, not deleted messages that mention the user after their read
        marker (all of them in a room never opened)."""
        marker = read_markers.alias("marker")
        query = (
            select(rooms.c.name, func.count().label("n"))
            .select_from(mentions)
            .join(rooms, rooms.c.id == mentions.c.room_id)
            .join(
                messages,
                and_(messages.c.room_id == mentions.c.room_id, messages.c.seq == mentions.c.seq),
            )
            .outerjoin(
                marker,
                and_(marker.c.room_id == mentions.c.room_id, marker.c.user_id == user.id),
            )
            .where(
                and_(
                    mentions.c.user_id == user.id,
                    messages.c.deleted == False,  # noqa: E712
                    mentions.c.seq > func.coalesce(marker.c.seq, 0),
                )
            )
            .group_by(rooms.c.name)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.name: int(r.n) for r in rows}
