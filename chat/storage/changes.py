"""Changes to stored messages: an edit, a deletion, a reaction added or taken back. Each is an
event of its room: it takes the room's next seq in the transaction that makes it (the room's
row is updated first, so writers of one room queue there, on PostgreSQL as on SQLite), marks
the message with that seq (`changed_seq`, how a `join` with `since` finds it), and returns the
message's whole state as it now stands, for the `update` frame. A refusal rolls the seq back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chat.errors import Forbidden, NoSuchMessage
from chat.models import Message, User
from chat.storage.messages import MessageLog
from chat.storage.reading import (
    files_by_seq,
    files_query,
    message_from_row,
    one_query,
    reactions_by_seq,
    reactions_query,
)
from chat.storage.schema import files, messages, reactions
from chat.storage.statements import NEXT_SEQ, now_ms


class _Unchanged(Exception):
    """Nothing to change (a reaction already there, or already gone): roll the seq back."""


class MessageChanges(MessageLog):
    async def edit_message(self, room_name: str, seq: int, author: User, text: str) -> Message:
        """Replace the text of the author's own message; the message as it now stands."""

        async def change(conn: AsyncConnection, room_id: int, row: Any, event: int) -> None:
            if row.user_id != author.id:
                raise Forbidden("You can only edit your own messages.")
            await conn.execute(
                _one(room_id, seq).values(text=text, edited_at=now_ms(), changed_seq=event)
            )

        found = await self._change(room_name, seq, change)
        assert found is not None
        return found[1]

    async def remove_message(
        self, room_name: str, seq: int, actor: User
    ) -> tuple[Message, Message]:
        """Delete a message (its author, or an admin): its text is wiped, its reactions go,
        its row stays so that replies can say "deleted". Returns it as it was and as it is."""

        async def change(conn: AsyncConnection, room_id: int, row: Any, event: int) -> None:
            if row.user_id != actor.id and not actor.is_admin:
                raise Forbidden("You can only delete your own messages.")
            await conn.execute(
                delete(reactions).where(
                    and_(reactions.c.room_id == room_id, reactions.c.seq == seq)
                )
            )
            # Its files go with its text (their chunks cascade): the row stays, they do not.
            await conn.execute(
                delete(files).where(and_(files.c.room_id == room_id, files.c.seq == seq))
            )
            await conn.execute(_one(room_id, seq).values(deleted=True, text="", changed_seq=event))

        found = await self._change(room_name, seq, change)
        assert found is not None
        return found

    async def react(
        self, room_name: str, seq: int, user: User, emoji: str, on: bool
    ) -> Message | None:
        """Add (`on`) or take back the user's reaction; None if it already stood so (no
        event)."""

        async def change(conn: AsyncConnection, room_id: int, row: Any, event: int) -> None:
            mine = and_(
                reactions.c.room_id == room_id,
                reactions.c.seq == seq,
                reactions.c.user_id == user.id,
                reactions.c.emoji == emoji,
            )
            if on:
                # The room's row is locked by this transaction already (the seq bump): nobody
                # else changes this message's reactions between this look and the insert.
                there = (await conn.execute(select(reactions.c.seq).where(mine))).first()
                if there is not None:
                    raise _Unchanged
                await conn.execute(
                    insert(reactions).values(
                        room_id=room_id, seq=seq, user_id=user.id, emoji=emoji, ts=now_ms()
                    )
                )
            elif not (await conn.execute(delete(reactions).where(mine))).rowcount:
                raise _Unchanged
            await conn.execute(_one(room_id, seq).values(changed_seq=event))

        found = await self._change(room_name, seq, change)
        return None if found is None else found[1]

    async def _change(
        self, room_name: str, seq: int, change: Any
    ) -> tuple[Message, Message] | None:
        try:
            async with self._write() as conn:
                room_id = await self._room_id(conn, room_name)
                # The room's row first: this takes the seq and queues the room's writers.
                event = int(
                    (await conn.execute(NEXT_SEQ, {"room_id": room_id, "n": 1})).scalar_one()
                )
                before = await self._state(conn, room_name, room_id, seq)
                row = (
                    await conn.execute(
                        select(messages.c.user_id, messages.c.deleted).where(
                            and_(messages.c.room_id == room_id, messages.c.seq == seq)
                        )
                    )
                ).first()
                if row is None or before is None:
                    raise NoSuchMessage(f"There is no message {seq} in #{room_name}.")
                if row.deleted:
                    raise NoSuchMessage(f"Message {seq} in #{room_name} was deleted.")
                await change(conn, room_id, row, event)
                after = await self._state(conn, room_name, room_id, seq)
                assert after is not None
        except _Unchanged:
            return None
        return before, after

    async def _state(
        self, conn: AsyncConnection, room_name: str, room_id: int, seq: int
    ) -> Message | None:
        row = (await conn.execute(one_query(room_id, seq))).first()
        if row is None:
            return None
        reacted = (await conn.execute(reactions_query(room_id, seq, seq))).all()
        attached = (await conn.execute(files_query(room_id, seq, seq))).all()
        return message_from_row(
            room_name,
            row,
            reactions_by_seq(reacted),
            client_id=False,
            files=files_by_seq(attached),
        )


def _one(room_id: int, seq: int) -> Any:
    return update(messages).where(and_(messages.c.room_id == room_id, messages.c.seq == seq))
