"""Group commit of chat messages on SQLite: many appends, one transaction.

Under load, appends queue here; one task takes everything queued and stores it in a single
transaction on its own sqlite3 connection: per room one seq bump for all its new messages (so
seq order is batch order), one insert of every row and one trim (`store_rows` of
chat.storage.appending, its statements compiled to SQLite SQL once). Every sender is acked only
after that commit: the outcomes are handed to whoever the appends name (`Committed`), so that
the socket's read loop goes on meanwhile (chat.conversation). If the
batch fails as a whole, it is retried one message per transaction, so a bad message fails
alone. The store's write lock is held around each batch, so the other writes still take turns
with it.

The transaction runs on the event loop thread: it is CPU work of a few microseconds per message
(WAL, synchronous=NORMAL: a commit does not wait for the disk), and the server runs on one core,
where a thread only adds hand-offs of the GIL. What can wait is kept off the loop: the WAL
checkpoint (which does sync to disk) runs on a thread every CHECKPOINT_EVERY messages, and when
another process holds SQLite's write lock (a CLI command, another worker), the batch waits for it
on that thread.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

from chat.storage.appending import Append, Outcome, StoreClosed, hand_over, store_rows
from chat.storage.engine import SQLITE_PRAGMAS
from chat.storage.sqlite.statements import AppendStatements, SqliteRun
from chat.storage.statements import now_ms

log = logging.getLogger(__name__)

# Bounds one transaction (and so how long the other writers wait for the lock).
MAX_BATCH = 1000
# How long the first append of a burst may wait for the rest of the burst to join its batch.
# Measured with `python -m bench --only ingest` (1000 messages at once), six runs each: 3 ms
# gave an ack p99 of 46-50 ms; 5 ms 48-55 (fewer, bigger batches: the first acks wait longer);
# 2 ms 48-54 (more commits and more writes per burst).
COLLECT_SECONDS = 0.003
# Messages stored between two WAL checkpoints (SQLite's own default is about 1000 pages).
CHECKPOINT_EVERY = 2000
# How long BEGIN waits for another process's write lock on the event loop before handing the
# batch to the thread, which waits as long as the store's other connections do.
LOOP_BUSY_MS = 20
PATIENT_BUSY_MS = 30_000


class GroupCommit:
    def __init__(
        self,
        path: str,
        statements: AppendStatements,
        *,
        history_limit: int,
        lock: asyncio.Lock,
    ) -> None:
        self.path = path
        self.sql = statements
        self.history_limit = history_limit
        self._lock = lock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-commit")
        self._db: sqlite3.Connection | None = None
        self._checkpoint_db: sqlite3.Connection | None = None  # used only on the thread
        self._checkpoint: asyncio.Future[None] | None = None
        self._since_checkpoint = 0
        self._run: SqliteRun | None = None  # on `_db`
        self._queue: list[Append] = []
        self._oldest = 0.0  # when the first append still queued was submitted (monotonic)
        self._inline = True  # whether `submit` may commit (see _commit_now)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def open(self) -> None:
        """Open both connections now, at start-up: opened on the first message, a connection
        that fails (out of file descriptors, a full disk) would fail that message, and the
        first message after every restart would pay for it."""
        self._connection()
        self._checkpoint_db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )

    def submit(self, append: Append) -> None:
        """Queue an append; its `to` is handed the outcome once it is committed (or has
        failed, or `StoreClosed` if the store closes first). Appends are stored in the order
        they are submitted, and handed over in that order."""
        queue = self._queue
        queue.append(append)
        if len(queue) == 1:
            self._oldest = time.monotonic()
        elif (
            (len(queue) >= MAX_BATCH or time.monotonic() - self._oldest >= COLLECT_SECONDS)
            and self._inline
            and not self._lock.locked()
        ):
            self._commit_now()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run_forever(), name="chat-group-commit"
            )
        self._wakeup.set()

    def _commit_now(self) -> None:
        """Store what is queued, here and now. In a burst the loop reads hundreds of frames in
        one iteration, during which the task does not run: without this, the first of them
        would wait for the last."""
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            # Another process is writing (or worse): the task takes the queue, waiting for the
            # lock on the thread, and until it has stored a batch, appends do not try again
            # (each try costs LOOP_BUSY_MS). Never an error for the sender whose frame this is.
            self._inline = False
            return
        batch = self._take_batch()
        self._finish(batch, self._commit(db, batch))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            # wait() rather than await: the task's own CancelledError is expected, ours is not.
            await asyncio.wait([self._task])
            self._task = None
        queued, self._queue = self._queue, []
        hand_over(queued, [StoreClosed("the store closed")] * len(queued))
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._disconnect_checkpointer)
        self._executor.shutdown(wait=True)
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # A burst of frames is read over several loop iterations: while appends keep
            # coming, let them join (for up to COLLECT_SECONDS). One transaction for the lot,
            # and its recipients get one write each instead of one per batch.
            deadline = loop.time() + COLLECT_SECONDS
            queued = 0
            while queued < len(self._queue) < MAX_BATCH and loop.time() < deadline:
                queued = len(self._queue)
                # Twice: frames read during the next iteration reach us in the one after.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            while self._queue:
                await self._store_next_batch()

    async def _store_next_batch(self) -> None:
        # A method of its own, so that the batch is let go once it is handed over: a local of
        # `_run` would keep it (every sender's `done`, and through it their sockets) while
        # the task waits for the next append.
        batch = self._take_batch()
        async with self._lock:
            outcomes = await self._store_batch(batch)
        self._inline = True
        self._finish(batch, outcomes)

    def _take_batch(self) -> list[Append]:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        self._oldest = time.monotonic()
        return batch

    def _finish(self, batch: list[Append], outcomes: list[Outcome]) -> None:
        """After a batch's transaction: checkpoint when due, hand every outcome over."""
        self._after_commit(len(batch))
        hand_over(batch, outcomes)

    async def _store_batch(self, batch: list[Append]) -> list[Outcome]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # "database is locked": another process is writing
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._commit_patiently, db, batch)
        return self._commit(db, batch)

    def _after_commit(self, stored: int) -> None:
        self._since_checkpoint += stored
        if self._since_checkpoint >= CHECKPOINT_EVERY and self._checkpoint is None:
            self._since_checkpoint = 0
            loop = asyncio.get_running_loop()
            self._checkpoint = loop.run_in_executor(self._executor, self._checkpoint_wal)
            self._checkpoint.add_done_callback(self._checkpoint_done)

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("WAL checkpoint failed: %s", future.exception())

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in SQLITE_PRAGMAS:
                db.execute(pragma)
            db.execute(f"PRAGMA busy_timeout={LOOP_BUSY_MS}")
            # Checkpoints are ours to run, on the thread (see the module docstring).
            db.execute("PRAGMA wal_autocheckpoint=0")
            self._db = db
            self._run = SqliteRun(db, self.sql)
        return self._db

    def _commit(self, db: sqlite3.Connection, batch: list[Append]) -> list[Outcome]:
        """Store the batch in the transaction just begun, or one by one if that fails."""
        try:
            outcomes = self._store(db, batch)
            db.execute("COMMIT")
            return outcomes
        except Exception as exc:  # sqlite3.Error, or a bug: never leave the transaction open
            if db.in_transaction:
                db.execute("ROLLBACK")
            if len(batch) == 1:
                log.exception("storing a message failed")
                return [exc]
            log.warning("a batch of %d messages failed; storing them one by one", len(batch))
        outcomes = []
        for item in batch:
            try:
                db.execute("BEGIN IMMEDIATE")
                outcomes.extend(self._store(db, [item]))
                db.execute("COMMIT")
            except Exception as exc:  # this message fails alone; its sender gets the error
                log.exception("storing a message failed")
                if db.in_transaction:
                    db.execute("ROLLBACK")
                outcomes.append(exc)
        return outcomes

    # --- on the thread ---

    def _commit_patiently(self, db: sqlite3.Connection, batch: list[Append]) -> list[Outcome]:
        db.execute(f"PRAGMA busy_timeout={PATIENT_BUSY_MS}")
        try:
            db.execute("BEGIN IMMEDIATE")
            return self._commit(db, batch)
        except sqlite3.Error as exc:
            return [exc] * len(batch)
        finally:
            db.execute(f"PRAGMA busy_timeout={LOOP_BUSY_MS}")

    def _checkpoint_wal(self) -> None:
        if self._checkpoint_db is None:
            self._checkpoint_db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
        # PASSIVE: copies what it can without ever making a writer wait.
        self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _disconnect_checkpointer(self) -> None:
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
            self._checkpoint_db = None

    # --- storing, on whichever thread holds the transaction ---

    def _store(self, db: sqlite3.Connection, batch: list[Append]) -> list[Outcome]:
        """`store_rows` for the batch, inside the open transaction on `db`.

        A resend is rare, so the batch is first stored without looking any up: the unique
        (room, user, client_id) keys of the messages and of the remembered client_ids then
        refuse a resend whose original is stored (kept, or trimmed but remembered). Only
        then is the batch rolled back to before its seq bumps and stored again, looking each
        client_id up first."""
        run = self._run
        assert run is not None and run.db is db
        ts = now_ms()
        db.execute("SAVEPOINT optimistic")
        try:
            outcomes = store_rows(run, batch, self.history_limit, ts, look_up=False)
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK TO optimistic")
            db.execute("RELEASE optimistic")
            return store_rows(run, batch, self.history_limit, ts, look_up=True)
        db.execute("RELEASE optimistic")
        return outcomes
