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

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chat.errors import NoSuchRoom
from chat.models import History, HistoryPage, Message, Position, User
from chat.storage.appending import SETTLE, Append
from chat.storage.base import StoreBase
from chat.storage.reading import (
    files_by_seq,
    files_query,
    first_seq,
    message_from_row,
    page_query,
    reactions_by_seq,
    reactions_query,
)
from chat.storage.schema import client_ids, messages, read_markers, rooms, users
from chat.storage.sqlite.fastread import read_transaction
from chat.storage.statements import (
    FILES,
    HISTORY,
    OLDEST_KEPT,
    REACTIONS,
    READ_MARKERS,
    ROOM_BY_NAME,
    ROOM_ID,
)


class MessageLog(StoreBase):
    # Queue an append (chat.storage.appending.Append): the group commit's or the Appender's
    # `submit`, set when the store opens; its `to` is handed the outcome once committed.
    submit: Callable[[Append], None]

    async def append_message(
        self,
        room_name: str,
        user: User,
        text: str,
        client_id: str | None,
        *,
        reply_to: int | None = None,
    ) -> tuple[Message, bool]:
        """Store a message with the room's next seq and trim the room to the history limit.

        Returns the message and whether it is new; a resend (same user, room and client_id)
        returns the stored copy and False, so the caller acks it again without re-broadcasting.
        """
        future: asyncio.Future[tuple[Message, bool]] = asyncio.get_running_loop().create_future()
        self.submit(
            Append(
                room_name, user.id, user.username, text, client_id, SETTLE, future, None, reply_to
            )
        )
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
        reacted: Sequence[Any]
        attached: Sequence[Any]
        if self._fast is not None:  # every join asks: one thread hop, one snapshot
            room_sql = self.sql(ROOM_BY_NAME, room_params)
            rows_sql = self.sql(HISTORY, rows_params)
            oldest_sql = self.sql(OLDEST_KEPT, room_params)
            reactions_sql = self.compiled(REACTIONS)
            files_sql = self.compiled(FILES)

            def read(db: Any) -> tuple[Any, Any, Any, Any, Any]:
                room = db.execute(*room_sql).fetchone()
                rows = db.execute(*rows_sql).fetchall()
                oldest = db.execute(*oldest_sql).fetchone()[0]
                reacted = attached = []
                if rows:
                    first = first_seq(rows)
                    reacted = db.execute(*reactions_sql(room=room_name, first=first)).fetchall()
                    attached = db.execute(*files_sql(room=room_name, first=first)).fetchall()
                return room, rows, oldest, reacted, attached

            room, rows, oldest, reacted, attached = await self._fast.run(
                lambda db: read_transaction(db, read)
            )
        else:
            async with self.engine.connect() as conn:
                room = (await conn.execute(ROOM_BY_NAME, room_params)).first()
                rows = (await conn.execute(HISTORY, rows_params)).all()
                oldest = (await conn.execute(OLDEST_KEPT, room_params)).scalar()
                reacted = attached = []
                if rows:
                    first = {"room": room_name, "first": first_seq(rows)}
                    reacted = (await conn.execute(REACTIONS, first)).all()
                    attached = (await conn.execute(FILES, first)).all()
        if room is None:
            raise NoSuchRoom(f"There is no room named {room_name!r}.")
        rows = list(reversed(rows))
        # A message committed after the room row was read can still be in `rows` (on the
        # PostgreSQL path the two reads are not one snapshot): the bound the hub filters held
        # and live frames with must cover it.
        last_seq = max(
            int(room.last_seq),
            max((max(r.seq, r.changed_seq or 0) for r in rows), default=0),
        )
        if after > last_seq:
            # Ahead of the database: what the client holds is not what the room holds.
            found, position = await self.history(room_name, None)
            return History(found, replace(position, reset=True))
        if after == last_seq:
            return History([], Position(last_seq))
        # Trimming takes the oldest messages first: nothing after `after` is missing when the
        # kept history reaches back to it, or nothing was ever trimmed (seq 1 is kept). Seqs
        # also number edits and reactions, so a kept history that begins just after `after`
        # by events alone counts as not complete: the client says "earlier messages are not
        # kept" rather than miss saying so.
        complete = oldest is None or int(oldest) <= after + 1 or int(oldest) == 1
        by_seq = reactions_by_seq(reacted)
        with_files = files_by_seq(attached)
        # A deleted message is sent (as such: the client drops it) only to a client that may
        # show it, one that had its seq already; every other message changed after `since`
        # is sent as it now stands.
        found = [
            message_from_row(room_name, r, by_seq, files=with_files)
            for r in rows
            if not r.deleted or (since is not None and r.seq <= after)
        ]
        return History(found, Position(last_seq, complete))

    async def history_page(self, room_name: str, before: int | None, limit: int) -> HistoryPage:
        """Up to `limit` kept messages older than `before` (the newest ones when None), oldest
        first: what a room page shows, and what it loads as its reader scrolls up."""
        async with self.engine.connect() as conn:
            room = (await conn.execute(ROOM_BY_NAME, {"room": room_name})).first()
            if room is None:
                raise NoSuchRoom(f"There is no room named {room_name!r}.")
            rows = (await conn.execute(page_query(room.id, before, limit + 1))).all()
            # One more than the page: whether older ones are kept.
            shown = rows[:limit]
            reacted: Sequence[Any] = []
            attached: Sequence[Any] = []
            if shown:
                first = first_seq(shown)
                reacted = (await conn.execute(reactions_query(room.id, first))).all()
                attached = (await conn.execute(files_query(room.id, first))).all()
        older = len(rows) > limit
        rows = list(reversed(shown))
        last_seq = int(room.last_seq)
        # Where the next older page ends: this page's first row, else where this one began.
        start = before if before is not None else last_seq + 1
        oldest = int(rows[0].seq) if rows else start
        by_seq = reactions_by_seq(reacted)
        with_files = files_by_seq(attached)
        return HistoryPage(
            messages=[
                message_from_row(room_name, r, by_seq, client_id=False, files=with_files)
                for r in rows
                if not r.deleted
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
        """Per room, how many kept messages came after the user's read marker (0 if never
        read: an unopened room is not a wall of unread noise). Messages, not seqs: edits and
        reactions take seqs too, and deleted messages are not waiting to be read."""
        unread = (
            select(rooms.c.name, func.count(messages.c.seq).label("n"))
            .join(
                read_markers,
                and_(read_markers.c.room_id == rooms.c.id, read_markers.c.user_id == user.id),
            )
            .outerjoin(
                messages,
                and_(
                    messages.c.room_id == rooms.c.id,
                    messages.c.seq > read_markers.c.seq,
                    messages.c.deleted == False,  # noqa: E712
                ),
            )
            .group_by(rooms.c.name)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(unread)).all()
        return {r.name: int(r.n) for r in rows}
