"""Rows to messages: a message as a client shows it (its text, whether it was edited or deleted,
the quote of what it answers, its reactions), from the rows of `HISTORY`-shaped reads and of
`REACTIONS`. Shared by a join's history, a page of history and the changes
(chat.storage.changes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, select

from chat.models import FileInfo, Message, Quote, Reaction
from chat.storage.appending import file_info, quote_text
from chat.storage.schema import files, messages, reactions, users
from chat.storage.statements import FILE_COLUMNS, MESSAGE_STATE


def page_query(room_id: int, upper: int | None, limit: int) -> Any:
    """One page of a room: its `limit` newest kept messages below `upper`, newest first."""
    bound = messages.c.room_id == room_id
    if upper is not None:
        bound = and_(bound, messages.c.seq < upper)
    return MESSAGE_STATE.where(bound).order_by(messages.c.seq.desc()).limit(limit)


def one_query(room_id: int, seq: int) -> Any:
    """One message's state."""
    return MESSAGE_STATE.where(and_(messages.c.room_id == room_id, messages.c.seq == seq))


def reactions_query(room_id: int, first: int, last: int | None = None) -> Any:
    """The reactions of a room's messages from seq `first` (to `last`), as `REACTIONS`."""
    bound = and_(reactions.c.room_id == room_id, reactions.c.seq >= first)
    if last is not None:
        bound = and_(bound, reactions.c.seq <= last)
    return (
        select(reactions.c.seq, reactions.c.emoji, users.c.username)
        .join(users, users.c.id == reactions.c.user_id)
        .where(bound)
        .order_by(reactions.c.seq, reactions.c.ts, reactions.c.user_id)
    )


def files_query(room_id: int, first: int, last: int | None = None) -> Any:
    """The files of a room's messages from seq `first` (to `last`), as `FILES`."""
    bound = and_(files.c.room_id == room_id, files.c.seq >= first)
    if last is not None:
        bound = and_(bound, files.c.seq <= last)
    return select(*FILE_COLUMNS).where(bound).order_by(files.c.seq, files.c.created, files.c.id)


def files_by_seq(rows: Iterable[Any]) -> dict[int, tuple[FileInfo, ...]]:
    """The rows of `FILES` grouped per message, in the order they were uploaded."""
    grouped: dict[int, list[FileInfo]] = {}
    for row in rows:
        grouped.setdefault(int(row[3]), []).append(file_info(row))
    return {seq: tuple(found) for seq, found in grouped.items()}


def reactions_by_seq(rows: Iterable[Any]) -> dict[int, tuple[Reaction, ...]]:
    """The rows of `REACTIONS` (seq, emoji, username), grouped per message and emoji in the
    order they were first added."""
    grouped: dict[int, dict[str, list[str]]] = {}
    for seq, emoji, username in rows:
        grouped.setdefault(int(seq), {}).setdefault(emoji, []).append(username)
    return {
        seq: tuple(Reaction(e, tuple(users)) for e, users in by_emoji.items())
        for seq, by_emoji in grouped.items()
    }


def message_from_row(
    room: str,
    row: Any,
    reactions: dict[int, tuple[Reaction, ...]],
    *,
    client_id: bool = True,
    files: dict[int, tuple[FileInfo, ...]] | None = None,
) -> Message:
    reply = None
    if row.reply_to is not None and row.reply_user is not None:
        deleted = bool(row.reply_deleted)
        reply = Quote(row.reply_user, "" if deleted else quote_text(row.reply_text), deleted)
    deleted = bool(row.deleted)
    return Message(
        room,
        int(row.seq),
        row.username,
        "" if deleted else row.text,
        int(row.ts),
        row.client_id if client_id else None,
        deleted=deleted,
        edited_at=None if row.edited_at is None else int(row.edited_at),
        reply_to=None if row.reply_to is None else int(row.reply_to),
        reply=reply,
        reactions=() if deleted else reactions.get(int(row.seq), ()),
        changed=None if row.changed_seq is None else int(row.changed_seq),
        files=() if deleted or not files else files.get(int(row.seq), ()),
    )


def first_seq(rows: Sequence[Any]) -> int:
    return min((int(r.seq) for r in rows), default=0)
