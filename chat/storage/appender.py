"""The message log on an engine without a group commit of its own (PostgreSQL; SQLite in memory).

One task stores what was submitted, everything queued in one transaction (`store_rows` through
SQLAlchemy), in the order it was submitted, and hands the outcomes over (`Committed`). A batch
that fails as a whole is stored again one message per transaction, so a bad message fails alone.
A resend racing its original on another node makes the transaction fail on the unique
(room, user, client_id) key: it is rolled back, seq bump included, and stored again, when the
look-up finds the stored copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chat.storage.appending import (
    Append,
    CoreRun,
    Outcome,
    StoreClosed,
    hand_over,
    store_rows,
)
from chat.storage.statements import now_ms

log = logging.getLogger(__name__)

# Bounds one transaction (and so how long the other writers wait for the rooms' row locks).
MAX_BATCH = 1000
# A resend racing its original: tries before the error is the sender's.
TRIES = 3


class Appender:
    def __init__(
        self,
        write: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        *,
        history_limit: int,
    ) -> None:
        self._write = write
        self.history_limit = history_limit
        self._queue: list[Append] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, append: Append) -> None:
        """Queue an append; its `to` is handed the outcome once it is committed (or has
        failed, or `StoreClosed` if the store closes first), in submission order."""
        self._queue.append(append)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-appender")
        self._wakeup.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # wait() rather than await: the task's own CancelledError is expected, ours is not.
            await asyncio.wait([self._task])
            self._task = None
        queued, self._queue = self._queue, []
        hand_over(queued, [StoreClosed("the store closed")] * len(queued))

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                await self._store_next_batch()

    async def _store_next_batch(self) -> None:
        # A method of its own: the batch is let go once it is handed over.
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            outcomes = await self._store(batch)
        except Exception as exc:  # the database failed: one by one, so a bad one fails alone
            if len(batch) == 1:
                log.exception("storing a message failed")
                outcomes = [exc]
            else:
                log.warning("a batch of %d messages failed; storing them one by one", len(batch))
                outcomes = [await self._store_alone(item) for item in batch]
        hand_over(batch, outcomes)

    async def _store_alone(self, item: Append) -> Outcome:
        try:
            return (await self._store([item]))[0]
        except Exception as exc:  # this message fails alone; its sender gets the error
            log.exception("storing a message failed")
            return exc

    async def _store(self, batch: list[Append]) -> list[Outcome]:
        for attempt in range(TRIES):
            try:
                async with self._write() as conn:
                    return await conn.run_sync(self._rows, batch)
            except IntegrityError:
                if attempt == TRIES - 1 or all(item.client_id is None for item in batch):
                    raise
        raise AssertionError("unreachable")

    def _rows(self, conn: Connection, batch: list[Append]) -> list[Outcome]:
        return store_rows(CoreRun(conn), batch, self.history_limit, now_ms(), look_up=True)
