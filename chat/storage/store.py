"""Durable data: `Store`, every query the app makes, over one async engine.

One code path serves SQLite (the embedded default) and PostgreSQL. A room's `last_seq` column is
the sequence counter: bumping it with `UPDATE ... RETURNING` takes the room's row lock, so the
insert that follows in the same transaction gets the next number with no gap and no twin, however
many processes write to the room at once.

The queries live by kind of record (chat.storage.accounts, .rooms, .messages); this module opens
and closes the store, and chooses how messages are stored: SQLite's group commit and fast reads
(chat.storage.sqlite) on a database file, the `Appender` on any other engine.
"""

from __future__ import annotations

import logging

from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncEngine

from chat.storage.accounts import Accounts
from chat.storage.appender import Appender
from chat.storage.changes import MessageChanges
from chat.storage.engine import create_engine
from chat.storage.files import FileStore
from chat.storage.notifications import Notifications
from chat.storage.push import PushSubscriptions
from chat.storage.rooms import Rooms
from chat.storage.schema import MIGRATION_LOCK_KEY
from chat.storage.sqlite.fastread import FastReads
from chat.storage.sqlite.groupcommit import GroupCommit
from chat.storage.sqlite.statements import AppendStatements

log = logging.getLogger(__name__)


class Store(Accounts, Rooms, MessageChanges, Notifications, FileStore, PushSubscriptions):
    """Every query the app makes, over one async engine."""

    def __init__(self, engine: AsyncEngine, *, history_limit: int) -> None:
        super().__init__(engine, history_limit=history_limit)
        self._appender = Appender(self._write, history_limit=history_limit)
        self._group: GroupCommit | None = None
        self.submit = self._appender.submit

    @classmethod
    async def open(cls, database_url: str, *, history_limit: int) -> Store:
        engine = create_engine(database_url)
        store = cls(engine, history_limit=history_limit)
        await store.migrate()
        await store.ensure_default_rooms()
        path = engine.url.database
        if store._write_lock is not None and path and path != ":memory:":
            # SQLite on a file: messages are stored by group commit, and the reads every
            # connect makes take one thread hop (docs/architecture.md, "The SQLite fast path").
            store._group = GroupCommit(
                path,
                AppendStatements.compile(store.compiled),
                history_limit=history_limit,
                lock=store._write_lock,
            )
            store._group.open()
            store.submit = store._group.submit
            store._fast = FastReads(path)
            await store._fast.open()
        return store

    async def close(self) -> None:
        await self._appender.close()
        if self._group is not None:
            await self._group.close()
        if self._fast is not None:
            await self._fast.close()
        await self.engine.dispose()

    async def migrate(self) -> None:
        from chat.storage.migrate import upgrade_to_head

        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Nodes starting together take turns; the lock goes with the transaction.
                await conn.execute(
                    sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(upgrade_to_head)
