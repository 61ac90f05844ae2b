"""The reads every connect makes (who is this user, does the room exist, its history), on SQLite,
in one thread hop each.

Through SQLAlchemy + aiosqlite each statement costs several hops to aiosqlite's thread (cursor,
execute, fetch, the pool's reset), which made them most of the cost of an authenticated upgrade +
join. Here a dedicated thread owns a plain sqlite3 connection (WAL: readers never wait for the
writer) and runs a whole read, in one read transaction when it has several statements. Rows
come back with attribute access, so the store turns them into models with the same functions.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import namedtuple
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class FastReads:
    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-read")
        self._db: sqlite3.Connection | None = None  # used only on the executor's thread
        self._row_types: dict[tuple[str, ...], Any] = {}

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the read thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    async def open(self) -> None:
        """Open the connection at start-up rather than on the first connect."""
        await self.run(lambda db: None)

    async def one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return await self.run(lambda db: db.execute(sql, params).fetchone())

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    # --- on the read thread ---

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._connection())

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA query_only=ON")
            db.row_factory = self._row
            self._db = db
        return self._db

    def _row(self, cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Any:
        fields = tuple(column[0] for column in cursor.description)
        row_type = self._row_types.get(fields)
        if row_type is None:
            row_type = self._row_types[fields] = namedtuple("Row", fields)
        return row_type(*values)

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def read_transaction(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Several statements that must see one snapshot."""
    db.execute("BEGIN")
    try:
        return fn(db)
    finally:
        db.execute("COMMIT")
