"""Rooms: creating and listing them, who may enter a private one, and where each one stands."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence

from sqlalchemy import and_, false, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from chat.errors import Forbidden, InvalidName, LimitReached, NameTaken
from chat.models import ROOM_NAME_RE, Room, User
from chat.storage.base import StoreBase, room_from_row
from chat.storage.schema import DEFAULT_ROOMS, read_markers, room_members, rooms, users
from chat.storage.statements import ROOM_BY_NAME, now_ms


class Rooms(StoreBase):
    async def ensure_default_rooms(self) -> None:
        for name in DEFAULT_ROOMS:
            if await self.room_by_name(name) is None:
                # Another process may create it between our look and our insert.
                with contextlib.suppress(NameTaken):
                    await self.create_room(name, creator_id=None)

    async def create_room(
        self,
        name: str,
        *,
        creator_id: int | None,
        private: bool = False,
        max_public: int | None = None,
    ) -> Room:
        """Create a room; with `max_public`, a public one only while there are fewer."""
        if not ROOM_NAME_RE.match(name):
            raise InvalidName(
                "Room names are 1 to 32 lowercase letters, digits, '-' or '_', starting with a "
                "letter or digit."
            )
        async with self._write() as conn:
            if not private and max_public is not None:
                public = (
                    select(func.count()).select_from(rooms).where(rooms.c.is_private == false())
                )
                if (await conn.execute(public)).scalar_one() >= max_public:
                    raise LimitReached(
                        f"This chat already has {max_public} public rooms, the most it allows. "
                        "Create a private room, or ask an administrator."
                    )
            try:
                await conn.execute(
                    insert(rooms).values(
                        name=name,
                        last_seq=0,
                        created_by=creator_id,
                        created_at=now_ms(),
                        is_private=private,
                    )
                )
            except IntegrityError:
                raise NameTaken(f"A room named {name!r} already exists.") from None
            row = (await conn.execute(select(rooms).where(rooms.c.name == name))).one()
            if private and creator_id is not None:
                await conn.execute(
                    insert(room_members).values(
                        room_id=row.id, user_id=creator_id, added_at=now_ms()
                    )
                )
        return room_from_row(row)

    async def room_by_name(self, name: str) -> Room | None:
        params = {"room": name}
        if self._fast is not None:  # every join asks
            row = await self._fast.one(*self.sql(ROOM_BY_NAME, params))
            return None if row is None else room_from_row(row)
        async with self.engine.connect() as conn:
            row = (await conn.execute(ROOM_BY_NAME, params)).first()
        return None if row is None else room_from_row(row)

    async def list_rooms(self, viewer: User | None = None) -> list[Room]:
        """Every room, or the ones `viewer` may see: public ones and private ones they are in
        (an admin sees all, to moderate them)."""
        query = select(rooms).order_by(rooms.c.name)
        if viewer is not None:
            # Direct conversations are listed apart (`direct_rooms`), and to nobody else, not
            # even an admin.
            query = query.where(rooms.c.dm_key.is_(None))
        if viewer is not None and not viewer.is_admin:
            mine = select(room_members.c.room_id).where(room_members.c.user_id == viewer.id)
            query = query.where(or_(rooms.c.is_private == False, rooms.c.id.in_(mine)))  # noqa: E712
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [room_from_row(r) for r in rows]

    # --- direct conversations ---

    async def direct_room(self, a: User, b: User) -> Room:
        """The direct conversation of two people: created on first use, the same room from
        either side. Its name is random (not guessable, never derived from the names); its
        two members are fixed."""
        if a.id == b.id:
            raise Forbidden("A direct conversation needs someone else.")
        key = f"{min(a.id, b.id)}-{max(a.id, b.id)}"
        found = await self._direct_by_key(key)
        if found is not None:
            return found
        now = now_ms()
        try:
            async with self._write() as conn:
                room_id = (
                    await conn.execute(
                        insert(rooms)
                        .values(
                            name="dm-" + secrets.token_hex(12),
                            last_seq=0,
                            created_by=None,
                            created_at=now,
                            is_private=True,
                            dm_key=key,
                        )
                        .returning(rooms.c.id)
                    )
                ).scalar_one()
                await conn.execute(
                    insert(room_members),
                    [
                        {"room_id": room_id, "user_id": a.id, "added_at": now},
                        {"room_id": room_id, "user_id": b.id, "added_at": now},
                    ],
                )
                # Read up to nothing, for both: what is said here counts as unread for the
                # other person before they ever open it (it was said to them).
                await conn.execute(
                    insert(read_markers),
                    [
                        {"room_id": room_id, "user_id": a.id, "seq": 0},
                        {"room_id": room_id, "user_id": b.id, "seq": 0},
                    ],
                )
        except IntegrityError:
            pass  # the other side created it at the same moment
        found = await self._direct_by_key(key)
        assert found is not None
        return found

    async def _direct_by_key(self, key: str) -> Room | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(rooms).where(rooms.c.dm_key == key))).first()
        return None if row is None else room_from_row(row)

    async def direct_rooms(self, viewer: User) -> list[tuple[Room, str]]:
        """The viewer's direct conversations, each with the other person's name."""
        me = room_members.alias("me")
        other = room_members.alias("other")
        query = (
            select(rooms, users.c.username.label("other_name"))
            .join(me, and_(me.c.room_id == rooms.c.id, me.c.user_id == viewer.id))
            .join(other, and_(other.c.room_id == rooms.c.id, other.c.user_id != viewer.id))
            .join(users, users.c.id == other.c.user_id)
            .where(rooms.c.dm_key.is_not(None))
            .order_by(users.c.username)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(room_from_row(r), r.other_name) for r in rows]

    async def direct_partner(self, room: Room, viewer: User) -> str | None:
        """The other person in a direct conversation (None if `viewer` is not in it)."""
        members = await self.members(room)
        if viewer.username not in members:
            return None
        others = [m for m in members if m != viewer.username]
        return others[0] if others else None

    # --- private rooms ---

    async def is_member(self, room: Room, user: User) -> bool:
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(room_members.c.user_id).where(
                        and_(room_members.c.room_id == room.id, room_members.c.user_id == user.id)
                    )
                )
            ).first()
        return found is not None

    async def can_enter(self, room: Room, user: User) -> bool:
        """Public rooms are open to all; a private one to its members and the admins."""
        return not room.is_private or user.is_admin or await self.is_member(room, user)

    async def members(self, room: Room) -> list[str]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(users.c.username)
                    .join(room_members, room_members.c.user_id == users.c.id)
                    .where(room_members.c.room_id == room.id)
                    .order_by(users.c.username)
                )
            ).all()
        return [r.username for r in rows]

    async def add_member(self, room: Room, user: User) -> bool:
        """Add a member; False if they already were one."""
        async with self._write() as conn:
            try:
                await conn.execute(
                    insert(room_members).values(room_id=room.id, user_id=user.id, added_at=now_ms())
                )
            except IntegrityError:
                return False
        return True

    async def remove_member(self, room: Room, user: User) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                room_members.delete().where(
                    and_(room_members.c.room_id == room.id, room_members.c.user_id == user.id)
                )
            )
        return bool(result.rowcount)

    async def last_seqs(self, names: Sequence[str]) -> dict[str, int]:
        """The rooms' last seq in the database (for the position check of chat.fanout.sequencer)."""
        if not names:
            return {}
        query = select(rooms.c.name, rooms.c.last_seq).where(rooms.c.name.in_(list(names)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.name: int(r.last_seq) for r in rows}
