"""SQLite's group commit (chat.groupcommit): runs on the event loop, but never makes the loop
wait for another process's write lock, and keeps the WAL checkpointed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from chat import groupcommit
from chat.db import Store
from chat.models import User


async def test_another_process_holding_the_write_lock_delays_the_message_not_the_loop(
    store: Store, alice: User, tmp_path: Path
) -> None:
    locked, release = threading.Event(), threading.Event()

    def other_writer() -> None:  # e.g. `python -m chat create-user` while the server runs
        db = sqlite3.connect(tmp_path / "chat.sqlite3", isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(5)
        db.execute("COMMIT")
        db.close()

    holder = threading.Thread(target=other_writer)
    holder.start()
    try:
        assert await asyncio.to_thread(locked.wait, 5)
        append = asyncio.create_task(store.append_message("general", alice, "hello", "c-1"))
        # The loop keeps running while the message waits for the lock.
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not append.done()
        release.set()
        message, is_new = await asyncio.wait_for(append, 5)
        assert is_new and message.seq == 1
    finally:
        release.set()
        holder.join()


async def test_the_wal_is_checkpointed_as_messages_are_stored(
    store: Store, alice: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(groupcommit, "CHECKPOINT_EVERY", 10)
    for i in range(60):  # 60 transactions of 4-5 pages each
        await store.append_message("general", alice, f"m{i}", None)
        await asyncio.sleep(0.005)  # give each checkpoint (on the thread) time to run
    # A writer starts again from the top of a WAL that was checkpointed to the end, so the
    # file holds only what was written since the last checkpoints.
    wal = tmp_path / "chat.sqlite3-wal"
    pages = (wal.stat().st_size - 32) // (4096 + 24)
    assert pages < 150  # ~70 here; ~270 with no checkpoint


async def test_a_batch_that_fails_is_stored_one_by_one_so_only_the_bad_message_fails(
    store: Store, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_store = groupcommit.GroupCommit._store

    def store_unless_poisoned(
        self: groupcommit.GroupCommit, db: sqlite3.Connection, batch: list[groupcommit._Append]
    ) -> list[groupcommit.Outcome]:
        if any(item.text == "poison" for item in batch):
            raise sqlite3.IntegrityError("a constraint this message breaks")
        return real_store(self, db, batch)

    monkeypatch.setattr(groupcommit.GroupCommit, "_store", store_unless_poisoned)
    texts = ["one", "poison", "two", "three"]
    outcomes = await asyncio.gather(
        *(store.append_message("general", alice, text, None) for text in texts),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    stored = [o for o in outcomes if isinstance(o, tuple)]
    assert [(m.text, m.seq) for m, _ in stored] == [("one", 1), ("two", 2), ("three", 3)]
    history, _, last = await store.history("general", None)
    assert [m.text for m in history] == ["one", "two", "three"] and last == 3
