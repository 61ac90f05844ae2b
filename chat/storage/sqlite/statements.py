"""The statements that store messages, compiled once to SQLite SQL, and `SqliteRun`: the
`Run` of chat.storage.appending on the group commit's plain sqlite3 connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chat.storage.statements import (
    ATTACH_FILE,
    BY_CLIENT_ID,
    FILE_TO_ATTACH,
    INSERT_MESSAGE,
    NEXT_SEQ,
    ORIGINAL,
    REMEMBER_CLIENT_ID,
    ROOM_ID,
    TRIM,
    Compiled,
)


@dataclass(frozen=True, slots=True)
class AppendStatements:
    """The statements that store messages, compiled for the group commit's sqlite3 connection."""

    room_id: Compiled
    by_client_id: Compiled
    next_seq: Compiled
    insert: Compiled
    remember: Compiled
    original: Compiled
    trim: Compiled
    file: Compiled
    attach: Compiled

    @classmethod
    def compile(cls, compile: Callable[[Any], Compiled]) -> AppendStatements:
        return cls(
            room_id=compile(ROOM_ID),
            by_client_id=compile(BY_CLIENT_ID),
            next_seq=compile(NEXT_SEQ),
            insert=compile(INSERT_MESSAGE),
            remember=compile(REMEMBER_CLIENT_ID),
            original=compile(ORIGINAL),
            trim=compile(TRIM),
            file=compile(FILE_TO_ATTACH),
            attach=compile(ATTACH_FILE),
        )


class SqliteRun:
    """`Run` on one sqlite3 connection, inside the transaction its caller opened."""

    __slots__ = ("_attached", "_remembered", "_room_ids", "_row", "db", "sql")

    def __init__(self, db: sqlite3.Connection, statements: AppendStatements) -> None:
        self.db = db
        self.sql = statements
        self._row = statements.insert.rows()
        self._remembered = statements.remember.rows()
        self._attached = statements.attach.rows()
        # Rooms are never deleted or renamed: an id once read stays right.
        self._room_ids: dict[str, int] = {}

    def room_id(self, room: str) -> int | None:
        room_id = self._room_ids.get(room)
        if room_id is None:
            row = self.db.execute(*self.sql.room_id(room=room)).fetchone()
            if row is None:
                return None
            room_id = self._room_ids[room] = int(row[0])
        return room_id

    def by_client_id(self, room_id: int, user_id: int, client_id: str) -> Sequence[Any]:
        query = self.sql.by_client_id(room_id=room_id, user_id=user_id, client_id=client_id)
        return self.db.execute(*query).fetchall()

    def next_seq(self, room_id: int, n: int) -> int:
        (last,) = self.db.execute(*self.sql.next_seq(room_id=room_id, n=n)).fetchone()
        return int(last)

    def insert(self, rows: list[dict[str, Any]]) -> None:
        self.db.executemany(self.sql.insert.sql, map(self._row, rows))

    def remember(self, rows: list[dict[str, Any]]) -> None:
        self.db.executemany(self.sql.remember.sql, map(self._remembered, rows))

    def original(self, room_id: int, seq: int) -> Any:
        return self.db.execute(*self.sql.original(room_id=room_id, seq=seq)).fetchone()

    def trim(self, room_id: int, keep: int) -> None:
        self.db.execute(*self.sql.trim(room_id=room_id, skip=keep - 1))

    def file(self, file_id: str) -> Any:
        return self.db.execute(*self.sql.file(file_id=file_id)).fetchone()

    def attach(self, rows: list[dict[str, Any]]) -> None:
        self.db.executemany(self.sql.attach.sql, map(self._attached, rows))
