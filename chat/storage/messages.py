"""The message log: storing messages (submitted, or awaited), reading a room's history from a
position, deleting a message, read markers, and the memory of client_ids.

Storing runs `store_rows` (chat.storage.appending) wherever it runs: in SQLite's group commit
(chat.storage.sqlite) on a database file, in the `Appender` elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chat.errors import NoSuchRoom
from chat.models import History, HistoryPage, Message, Position, User
from chat.storage.appending import SETTLE, Append
from chat.storage.base import StoreBase
from chat.storage.schema import client_ids, messages, read_markers, rooms, users
from chat.storage.sqlite.fastread import read_transaction
from chat.storage.statements import HISTORY, READ_MARKERS, ROOM_BY_NAME, ROOM_ID


class MessageLog(StoreBase):
    # Queue an append (chat.storage.appending.Append): the group commit's or the Appender's
    # `submit`, set when the store opens; its `to` is handed the outcome once committed.
    submit: Callable[[Append], None]

    async def append_message(
        self, room_name: str, user: User, text: str, client_id: str | None
    ) -> tuple[Message, bool]:
        """Store a message with the room's next seq and trim the room to the history limit.

        Returns the message and whether it is new; a resend (same user, room and client_id)
        returns the stored copy and False, so the caller acks it again without re-broadcasting.
        """
        future: asyncio.Future[tuple[Message, bool]] = asyncio.get_running_loop().create_future()
        self.submit(Append(room_name, user.id, user.username, text, client_id, SETTLE, future))
        return await future

    async def forget_client_ids(self, *, older_than: int, keep: int, active_since: int) -> int:
        """Prune the remembered client_ids: those stored before `older_than` (ms), and beyond
        the newest `keep` of each user who sent something since `active_since` (ms; only they
        can have gone over). Returns how many were forgotten."""
        over = (
            select(client_ids.c.user_id)
            .where(
                client_ids.c.user_id.in_(
                    select(client_ids.c.user_id).where(client_ids.c.ts >= active_since)
                )
            )
            .group_by(client_ids.c.user_id)
            .having(func.count() > keep)
        )
        async with self.engine.connect() as conn:
            heavy = list((await conn.execute(over)).scalars())
        async with self._write() as conn:
            forgotten = (
                await conn.execute(delete(client_ids).where(client_ids.c.ts < older_than))
            ).rowcount
            for user_id in heavy:
                newest = (
                    select(client_ids.c.ts)
                    .where(client_ids.c.user_id == user_id)
                    .order_by(client_ids.c.ts.desc())
                    .offset(keep - 1)
                    .limit(1)
                    .scalar_subquery()
                )
                forgotten += (
                    await conn.execute(
                        delete(client_ids).where(
                            and_(client_ids.c.user_id == user_id, client_ids.c.ts < newest)
                        )
                    )
                ).rowcount
        return int(forgotten)

    async def _room_id(self, conn: AsyncConnection, room_name: str) -> int:
        room_id = (await conn.execute(ROOM_ID, {"room": room_name})).scalar_one_or_none()
        if room_id is None:
            raise NoSuchRoom(f"There is no room named {room_name!r}.")
        return int(room_id)

    async def history(self, room_name: str, since: int | None) -> History:
        """Messages after `since` (or the whole kept history), and the room's position: its
        last seq, and whether that is everything the client missed.

        `complete` is False when `since` reaches further back than what is kept, so the client
        can say so instead of pretending nothing was missed. When `since` is beyond the room's
        last seq (the database was restored from a backup, or is a replica that lags), the
        answer is the whole kept history with `reset`: the client shows it instead of what it
        has (see `reset` in docs/protocol.md).
        """
        after = since or 0
        room_params = {"room": room_name}
        rows_params = {"room": room_name, "after": after, "limit": self.history_limit}
        rows: Sequence[Any]
        if self._fast is not None:  # every join asks: one thread hop, one snapshot
            room_sql = self.sql(ROOM_BY_NAME, room_params)
            rows_sql = self.sql(HISTORY, rows_params)
            room, rows = await self._fast.run(
                lambda db: read_transaction(
                    db,
                    lambda db: (db.execute(*room_sql).fetchone(), db.execute(*rows_sql).fetchall()),
                )
            )
        else:
            async with self.engine.connect() as conn:
                room = (await conn.execute(ROOM_BY_NAME, room_params)).first()
                rows = (await conn.execute(HISTORY, rows_params)).all()
        if room is None:
            raise NoSuchRoom(f"There is no room named {room_name!r}.")
        rows = list(reversed(rows))
        # A message committed after the room row was read can still be in `rows` (on the
        # PostgreSQL path the two reads are not one snapshot): the bound the hub filters held
        # and live frames with must cover it.
        last_seq = max(int(room.last_seq), rows[-1].seq if rows else 0)
        if after > last_seq:
            # Ahead of the database: what the client holds is not what the room holds.
            found, position = await self.history(room_name, None)
            return History(found, replace(position, reset=True))
        if after == last_seq:
            return History([], Position(last_seq))
        # Deleted messages still count here: the client missed nothing it is allowed to see.
        complete = bool(rows) and rows[0].seq == after + 1
        found = [
            Message(room_name, r.seq, r.username, r.text, r.ts, r.client_id)
            for r in rows
            if not r.deleted
        ]
        return History(found, Position(last_seq, complete))

    async def history_page(self, room_name: str, before: int | None, limit: int) -> HistoryPage:
        """Up to `limit` kept messages older than `before` (the newest ones when None), oldest
        first: what a room page shows, and what it loads as its reader scrolls up."""
        async with self.engine.connect() as conn:
            room = (await conn.execute(ROOM_BY_NAME, {"room": room_name})).first()
            if room is None:
                raise NoSuchRoom(f"There is no room named {room_name!r}.")
            bound = messages.c.seq < before if before is not None else true()
            rows = (
                await conn.execute(
                    select(
                        messages.c.seq,
                        messages.c.text,
                        messages.c.ts,
                        messages.c.deleted,
                        users.c.username,
                    )
                    .join(users, users.c.id == messages.c.user_id)
                    .where(and_(messages.c.room_id == room.id, bound))
                    .order_by(messages.c.seq.desc())
                    .limit(limit + 1)  # one more: whether older ones are kept
                )
            ).all()
        older = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        last_seq = max(int(room.last_seq), rows[-1].seq if rows else 0)
        # Where the next older page ends: this page's first row, else where this one began.
        start = before if before is not None else last_seq + 1
        oldest = int(rows[0].seq) if rows else start
        return HistoryPage(
            messages=[
                Message(room_name, r.seq, r.username, r.text, r.ts) for r in rows if not r.deleted
            ],
            older=older,
            # Nothing older is kept, yet the room's first messages are gone: HISTORY_LIMIT.
            forgotten=not older and oldest > 1,
            oldest_seq=oldest,
            last_seq=last_seq,
        )

    async def message_at(self, room_name: str, seq: int) -> Message | None:
        """One kept message (not deleted), e.g. to show it before an admin deletes it."""
        async with self.engine.connect() as conn:
            room_id = await self._room_id(conn, room_name)
            return await self._message_at(conn, room_name, room_id, seq)

    async def _message_at(
        self, conn: AsyncConnection, room_name: str, room_id: int, seq: int
    ) -> Message | None:
        row = (
            await conn.execute(
                select(messages.c.text, messages.c.ts, users.c.username)
                .join(users, users.c.id == messages.c.user_id)
                .where(
                    and_(
                        messages.c.room_id == room_id,
                        messages.c.seq == seq,
                        messages.c.deleted == False,  # noqa: E712
                    )
                )
            )
        ).first()
        return None if row is None else Message(room_name, seq, row.username, row.text, row.ts)

    async def delete_message(self, room_name: str, seq: int) -> Message | None:
        """Wipe a message's text and hide it from history; return it as it was (for the
        moderation log), or None if there is no such message."""
        async with self._write() as conn:
            room_id = await self._room_id(conn, room_name)
            before = await self._message_at(conn, room_name, room_id, seq)
            if before is None:
                return None
            result = await conn.execute(
                update(messages)
                .where(
                    and_(
                        messages.c.room_id == room_id,
                        messages.c.seq == seq,
                        messages.c.deleted == False,  # noqa: E712
                    )
                )
                .values(deleted=True, text="")
            )
        return before if result.rowcount else None

    # --- read markers ---

    async def mark_read(self, room_name: str, user: User, seq: int) -> int:
        """Move the user's read marker forward (never back); return where it now stands."""
        async with self._write() as conn:
            room = (await conn.execute(select(rooms).where(rooms.c.name == room_name))).first()
            if room is None:
                raise NoSuchRoom(f"There is no room named {room_name!r}.")
            seq = min(seq, int(room.last_seq))
            current = (
                await conn.execute(
                    select(read_markers.c.seq).where(
                        and_(read_markers.c.user_id == user.id, read_markers.c.room_id == room.id)
                    )
                )
            ).scalar_one_or_none()
            if current is None:
                await conn.execute(
                    insert(read_markers).values(user_id=user.id, room_id=room.id, seq=seq)
                )
                return seq
            if seq > current:
                await conn.execute(
                    update(read_markers)
                    .where(
                        and_(read_markers.c.user_id == user.id, read_markers.c.room_id == room.id)
                    )
                    .values(seq=seq)
                )
                return seq
            return int(current)

    async def read_markers(self, room_name: str) -> dict[str, int]:
        params = {"room": room_name}
        rows: Sequence[Any]
        if self._fast is not None:  # every join asks
            sql = self.sql(READ_MARKERS, params)
            rows = await self._fast.run(lambda db: db.execute(*sql).fetchall())
        else:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(READ_MARKERS, params)).all()
        return {r.username: int(r.seq) for r in rows}

    async def unread_counts(self, user: User) -> dict[str, int]:
        """Per room, how many messages came after the user's read marker (0 if never read:
        an unopened room is not a wall of unread noise)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(rooms.c.name, rooms.c.last_seq, read_markers.c.seq).join(
                        read_markers,
                        and_(
                            read_markers.c.room_id == rooms.c.id,
                            read_markers.c.user_id == user.id,
                        ),
                    )
                )
            ).all()
        return {r.name: max(0, int(r.last_seq) - int(r.seq)) for r in rows}
