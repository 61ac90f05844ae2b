"""What every part of the store shares: the engine, SQLite's write lock, SQLite's fast reads, the
statements compiled for them, and the functions that turn rows into models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chat.models import Room, User
from chat.storage.sqlite.fastread import FastReads
from chat.storage.statements import Compiled


class StoreBase:
    def __init__(self, engine: AsyncEngine, *, history_limit: int) -> None:
        self.engine = engine
        self.history_limit = history_limit
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time; queueing writers here instead of in SQLite's busy loop
        # keeps latency flat and commit order equal to seq order.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # SQLite on a file: the reads every connect makes take one thread hop (chat.storage.
        # sqlite.fastread).
        self._fast: FastReads | None = None
        self._compiled: dict[Any, Compiled] = {}

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    def compiled(self, query: Any) -> Compiled:
        """A Core query compiled once for this database's dialect (see `Compiled`)."""
        hit = self._compiled.get(query)
        if hit is None:
            compiled = query.compile(dialect=self.engine.dialect)
            # The dialect may add parameters of its own (SQLite: OFFSET with LIMIT).
            hit = self._compiled[query] = Compiled(
                str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params)
            )
        return hit

    def sql(self, query: Any, params: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """A Core query as SQLite SQL and its positional parameters (see `Compiled`)."""
        compiled = self.compiled(query)
        return compiled.sql, compiled.args(params)


def user_from_row(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        is_admin=bool(row.is_admin),
        password_hash=row.password_hash,
        created_at=row.created_at,
        session_version=int(row.session_version),
        banned=bool(row.banned),
        must_change_password=bool(row.must_change_password),
    )


def room_from_row(row: Any) -> Room:
    return Room(
        id=row.id,
        name=row.name,
        last_seq=row.last_seq,
        created_at=row.created_at,
        is_private=bool(row.is_private),
        created_by=row.created_by,
        dm_key=row.dm_key,
    )
