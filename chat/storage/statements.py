"""The statements every join and every stored message runs, built once with named parameters,
and `Compiled`: one of them compiled to SQLite SQL for a plain sqlite3 connection (chat.storage.
sqlite), so that each statement is still written once, with SQLAlchemy."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, bindparam, func, insert, null, or_, select, union_all, update

from chat.storage.schema import (
    client_ids,
    files,
    messages,
    reactions,
    read_markers,
    revoked_sessions,
    rooms,
    users,
)

# The reads every upgrade and join makes, built once with named parameters.
# Every request and upgrade: the user, and whether this session was revoked, in one read.
SESSION_USER = select(
    users,
    select(revoked_sessions.c.session_id)
    .where(revoked_sessions.c.session_id == bindparam("session_id"))
    .exists()
    .label("revoked"),
).where(users.c.id == bindparam("user_id"))
ROOM_BY_NAME = select(rooms).where(rooms.c.name == bindparam("room"))
# The message a reply answers, and its author: a left join on their primary keys.
_ORIGINAL = messages.alias("original")
_ORIGINAL_USER = users.alias("original_user")
# A room's messages with everything a client shows of them (the reactions come apart, see
# REACTIONS), joined to what each reply answers.
MESSAGE_STATE = (
    select(
        messages.c.seq,
        messages.c.text,
        messages.c.ts,
        messages.c.client_id,
        messages.c.deleted,
        messages.c.reply_to,
        messages.c.edited_at,
        messages.c.changed_seq,
        users.c.username,
        _ORIGINAL_USER.c.username.label("reply_user"),
        _ORIGINAL.c.text.label("reply_text"),
        _ORIGINAL.c.deleted.label("reply_deleted"),
    )
    .join(users, users.c.id == messages.c.user_id)
    .outerjoin(
        _ORIGINAL,
        and_(_ORIGINAL.c.room_id == messages.c.room_id, _ORIGINAL.c.seq == messages.c.reply_to),
    )
    .outerjoin(_ORIGINAL_USER, _ORIGINAL_USER.c.id == _ORIGINAL.c.user_id)
)
# A join's history: the messages new after `after`, or changed after it, newest first.
HISTORY = (
    MESSAGE_STATE.where(
        and_(
            messages.c.room_id
            == select(rooms.c.id).where(rooms.c.name == bindparam("room")).scalar_subquery(),
            or_(messages.c.seq > bindparam("after"), messages.c.changed_seq > bindparam("after")),
        )
    )
    .order_by(messages.c.seq.desc())
    .limit(bindparam("limit", type_=Integer))
)
# Where a room's kept history begins (None: no message yet).
OLDEST_KEPT = select(func.min(messages.c.seq)).where(
    messages.c.room_id
    == select(rooms.c.id).where(rooms.c.name == bindparam("room")).scalar_subquery()
)
# The reactions of a room's messages from seq `first` on, in the order they were added.
REACTIONS = (
    select(reactions.c.seq, reactions.c.emoji, users.c.username)
    .join(users, users.c.id == reactions.c.user_id)
    .where(
        and_(
            reactions.c.room_id
            == select(rooms.c.id).where(rooms.c.name == bindparam("room")).scalar_subquery(),
            reactions.c.seq >= bindparam("first"),
        )
    )
    .order_by(reactions.c.seq, reactions.c.ts, reactions.c.user_id)
)
# A file as every read of it returns it (storage/appending.file_info turns it into a FileInfo).
FILE_COLUMNS = (
    files.c.id,
    files.c.room_id,
    files.c.uploader_id,
    files.c.seq,
    files.c.name,
    files.c.size,
    files.c.type,
    files.c.width,
    files.c.height,
)
# The files of a room's messages from seq `first` on (a history read: with the index on
# (room_id, seq) this costs a room without files one look).
FILES = (
    select(*FILE_COLUMNS)
    .where(
        and_(
            files.c.room_id
            == select(rooms.c.id).where(rooms.c.name == bindparam("room")).scalar_subquery(),
            files.c.seq >= bindparam("first"),
        )
    )
    .order_by(files.c.seq, files.c.created, files.c.id)
)
# Storing a message (chat.storage.appending, for a whole batch: one seq bump and one trim per
# room, one insert of all rows), in one transaction: through SQLAlchemy, or compiled to SQLite SQL
# for the group commit's plain sqlite3 connection.
ROOM_ID = select(rooms.c.id).where(rooms.c.name == bindparam("room"))
# A resend's original: in the kept history (with its text), or only remembered (trimmed).
BY_CLIENT_ID = union_all(
    select(messages.c.seq, messages.c.ts, messages.c.text).where(
        and_(
            messages.c.room_id == bindparam("room_id"),
            messages.c.user_id == bindparam("user_id"),
            messages.c.client_id == bindparam("client_id"),
        )
    ),
    select(client_ids.c.seq, client_ids.c.ts, null().label("text")).where(
        and_(
            client_ids.c.room_id == bindparam("room_id"),
            client_ids.c.user_id == bindparam("user_id"),
            client_ids.c.client_id == bindparam("client_id"),
        )
    ),
)
# Takes `n` seqs at once; the last one is returned.
NEXT_SEQ = (
    update(rooms)
    .where(rooms.c.id == bindparam("room_id"))
    .values(last_seq=rooms.c.last_seq + bindparam("n", type_=Integer))
    .returning(rooms.c.last_seq)
)
INSERT_MESSAGE = insert(messages).values(
    room_id=bindparam("room_id"),
    seq=bindparam("seq"),
    user_id=bindparam("user_id"),
    text=bindparam("text"),
    ts=bindparam("ts"),
    client_id=bindparam("client_id"),
    reply_to=bindparam("reply_to"),
    # Explicit: compiled for the group commit's plain sqlite3, no Python-side default would run.
    deleted=False,
)
REMEMBER_CLIENT_ID = insert(client_ids).values(
    user_id=bindparam("user_id"),
    client_id=bindparam("client_id"),
    room_id=bindparam("room_id"),
    seq=bindparam("seq"),
    ts=bindparam("ts"),
)
# Trim in the same transaction: the room never holds more than the limit. The limit counts
# messages, not seqs (edits and reactions take seqs too): everything older than the room's
# `keep`-th newest message goes, and its reactions with it (their foreign key cascades).
_KEPT_FROM = (
    select(messages.c.seq)
    .where(messages.c.room_id == bindparam("room_id"))
    .order_by(messages.c.seq.desc())
    .limit(1)
    .offset(bindparam("skip", type_=Integer))
    .scalar_subquery()
)
TRIM = messages.delete().where(
    and_(messages.c.room_id == bindparam("room_id"), messages.c.seq < _KEPT_FROM)
)
# A file a new message attaches (only messages with files run these): is it there, whose, and
# attached yet? Then, once the message's row is in, the file is the message's.
FILE_TO_ATTACH = (
    select(*FILE_COLUMNS)
    .where(files.c.id == bindparam("file_id"))
    # PostgreSQL: a second message attaching the same upload at once (another tab, another
    # node) waits here, then sees it attached. (SQLite has one writer: nothing to lock.)
    .with_for_update()
)
ATTACH_FILE = (
    update(files)
    .where(and_(files.c.id == bindparam("file_id"), files.c.seq.is_(None)))
    .values(seq=bindparam("message_seq"))
)
# What a new reply quotes: the kept message it answers.
ORIGINAL = (
    select(users.c.username, messages.c.text, messages.c.deleted)
    .join(users, users.c.id == messages.c.user_id)
    .where(and_(messages.c.room_id == bindparam("room_id"), messages.c.seq == bindparam("seq")))
)
READ_MARKERS = (
    select(users.c.username, read_markers.c.seq)
    .join(users, users.c.id == read_markers.c.user_id)
    .join(rooms, rooms.c.id == read_markers.c.room_id)
    .where(rooms.c.name == bindparam("room"))
)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A Core statement compiled once to SQLite SQL, for a plain sqlite3 connection (`FastReads`
    and `GroupCommit`): the statement is still written once, with SQLAlchemy."""

    sql: str
    names: tuple[str, ...]  # the named parameters, in the order of the SQL's "?"s
    defaults: dict[str, Any]

    def args(self, params: dict[str, Any]) -> tuple[Any, ...]:
        defaults = self.defaults
        return tuple(params[n] if n in params else defaults[n] for n in self.names)

    def __call__(self, **params: Any) -> tuple[str, tuple[Any, ...]]:
        """(SQL, positional arguments) for `sqlite3.Connection.execute`."""
        return self.sql, self.args(params)

    def rows(self) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        """A fast function from a row's parameters (all of them, defaults included) to its
        positional arguments, for `executemany`."""
        if len(self.names) == 1:
            name = self.names[0]
            return lambda row: (row[name],)
        return operator.itemgetter(*self.names)


def now_ms() -> int:
    return int(time.time() * 1000)
