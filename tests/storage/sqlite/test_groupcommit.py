"""SQLite's group commit (chat.storage.sqlite.groupcommit): runs on the event loop, but never
makes the loop wait for another process's write lock, and keeps the WAL checkpointed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from chat.models import User
from chat.storage.appending import Append, Outcome
from chat.storage.sqlite import groupcommit
from chat.storage.store import Store
from tests.helpers import fail_batches_holding


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
    fail_batches_holding(
        monkeypatch, "poison", sqlite3.IntegrityError("a constraint this message breaks")
    )
    texts = ["one", "poison", "two", "three"]
    outcomes = await asyncio.gather(
        *(store.append_message("general", alice, text, None) for text in texts),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    stored = [o for o in outcomes if isinstance(o, tuple)]
    assert [(m.text, m.seq) for m, _ in stored] == [("one", 1), ("two", 2), ("three", 3)]
    history, at = await store.history("general", None)
    last = at.seq
    assert [m.text for m in history] == ["one", "two", "three"] and last == 3


async def test_a_resend_among_new_messages_gets_its_stored_copy_and_leaves_no_gap(
    store: Store, alice: User
) -> None:
    # The batch is first stored without looking client_ids up; the stored "a" makes that fail,
    # and the batch is stored again, looking them up, from before its seq bump.
    await store.append_message("general", alice, "first", "a")
    outcomes = await asyncio.gather(
        store.append_message("general", alice, "x", "b"),
        store.append_message("general", alice, "first", "a"),
        store.append_message("general", alice, "y", "c"),
    )
    assert [(m.text, m.seq, new) for m, new in outcomes] == [
        ("x", 2, True),
        ("first", 1, False),
        ("y", 3, True),
    ]
    history, at = await store.history("general", None)
    last = at.seq
    assert [(m.seq, m.text) for m in history] == [(1, "first"), (2, "x"), (3, "y")]
    assert last == 3


class _Recorder:
    """Where the group commit hands the stored messages (the app's is chat.conversation's)."""

    def __init__(self, done: list[str]) -> None:
        self.done = done

    def committed(self, batch: Sequence[Append], outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            assert isinstance(outcome, tuple)
            self.done.append(outcome[0].text)


def _submit(store: Store, user: User, text: str, done: list[str]) -> None:
    store.submit(Append("general", user.id, user.username, text, None, _Recorder(done)))


async def test_appends_made_during_one_long_loop_iteration_are_committed_as_they_come(
    store: Store, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst is read in one loop iteration, during which the commit task cannot run; the
    # appends themselves commit once the oldest has waited COLLECT_SECONDS.
    monkeypatch.setattr(groupcommit, "COLLECT_SECONDS", 0.005)
    done: list[str] = []
    for i in range(3):  # no await: one loop iteration
        _submit(store, alice, f"m{i}", done)
        time.sleep(0.006)  # noqa: ASYNC251 - on purpose: the CPU work of reading many frames
    # m1 found m0 waiting for longer than that and committed both; m2 waits for the task.
    assert done == ["m0", "m1"]
    async with asyncio.timeout(5):
        while len(done) < 3:
            await asyncio.sleep(0.01)
    assert done == ["m0", "m1", "m2"]
    history, _ = await store.history("general", None)
    assert [(m.seq, m.text) for m in history] == [(1, "m0"), (2, "m1"), (3, "m2")]


async def test_while_another_process_holds_the_lock_appends_try_to_commit_only_once(
    store: Store, alice: User, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(groupcommit, "COLLECT_SECONDS", 0.0)
    tries = 0
    real_commit_now = groupcommit.GroupCommit._commit_now

    def counted(self: groupcommit.GroupCommit) -> None:
        nonlocal tries
        tries += 1
        real_commit_now(self)

    monkeypatch.setattr(groupcommit.GroupCommit, "_commit_now", counted)
    other = sqlite3.connect(tmp_path / "chat.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    done: list[str] = []
    try:
        for i in range(5):
            _submit(store, alice, f"m{i}", done)
        # Each try waits LOOP_BUSY_MS on the loop: one failed try, then the task takes over.
        assert tries == 1 and done == []
    finally:
        other.execute("COMMIT")
        other.close()
    async with asyncio.timeout(5):
        while len(done) < 5:
            await asyncio.sleep(0.01)
    assert done == ["m0", "m1", "m2", "m3", "m4"]


async def test_messages_and_checkpoints_need_no_new_file_descriptor_once_open(
    store: Store, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of descriptors (or any failure to open the file) after start-up: the message path
    # opened its connections when the store opened, so it does not notice.
    monkeypatch.setattr(groupcommit, "CHECKPOINT_EVERY", 2)

    def no_descriptors(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", no_descriptors)
    for i in range(5):
        message, is_new = await store.append_message("general", alice, f"m{i}", None)
        assert is_new and message.seq == i + 1
        await asyncio.sleep(0.01)  # the checkpoints run on their thread meanwhile
    messages, _ = await store.history("general", None)
    assert [m.text for m in messages] == [f"m{i}" for i in range(5)]
