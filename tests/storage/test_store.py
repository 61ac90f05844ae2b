"""The store's behaviour, the same on SQLite and on PostgreSQL; concurrent writers on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from chat.errors import NameTaken, NoSuchRoom
from chat.models import User
from chat.settings import Settings
from chat.storage.engine import create_engine
from chat.storage.migrate import alembic_config
from chat.storage.schema import client_ids, messages, rooms
from chat.storage.statements import now_ms
from chat.storage.store import Store
from tests.storage.backends import BACKENDS, store_on

LIMIT = 5


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with store_on(request, tmp_path, history_limit=LIMIT) as store:
        yield store


async def make_user(store: Store, name: str) -> User:
    return await store.create_user(name, "not-a-real-hash")


async def test_default_room_exists_and_the_first_account_is_the_admin(store: Store) -> None:
    assert [r.name for r in await store.list_rooms()] == ["general"]
    first, second = await make_user(store, "alice"), await make_user(store, "bob")
    assert first.is_admin and not second.is_admin
    with pytest.raises(NameTaken):
        await make_user(store, "alice")


async def test_each_message_takes_the_next_seq_and_the_room_keeps_the_last_n(store: Store) -> None:
    alice = await make_user(store, "alice")
    seqs = [(await store.append_message("general", alice, f"m{i}", None))[0].seq for i in range(8)]
    assert seqs == list(range(1, 9))
    kept, at = await store.history("general", None)
    complete = at.complete
    last = at.seq
    assert [m.text for m in kept] == ["m3", "m4", "m5", "m6", "m7"]
    assert last == 8 and not complete  # seq 1..3 were trimmed away
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(messages.c.seq).order_by(messages.c.seq))).scalars()
        assert list(stored) == [4, 5, 6, 7, 8]


async def test_since_returns_exactly_what_was_missed_and_says_when_it_cannot(store: Store) -> None:
    alice = await make_user(store, "alice")
    for i in range(7):
        await store.append_message("general", alice, f"m{i}", None)
    missed, at = await store.history("general", 5)
    complete = at.complete
    last = at.seq
    assert [m.seq for m in missed] == [6, 7] and complete and last == 7
    nothing, at = await store.history("general", 7)
    complete = at.complete
    assert nothing == [] and complete
    too_old, at = await store.history("general", 1)
    complete = at.complete
    assert [m.seq for m in too_old] == [3, 4, 5, 6, 7] and not complete
    with pytest.raises(NoSuchRoom):
        await store.history("nowhere", None)


async def test_a_resend_with_the_same_client_id_is_stored_once(store: Store) -> None:
    alice, bob = await make_user(store, "alice"), await make_user(store, "bob")
    first, is_new = await store.append_message("general", alice, "hello", "c-1")
    again, is_new_again = await store.append_message("general", alice, "hello", "c-1")
    assert is_new and not is_new_again and again == first
    # Another user may happen to pick the same client_id.
    other, other_new = await store.append_message("general", bob, "hi", "c-1")
    assert other_new and other.seq == first.seq + 1


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_at_default_limit(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Store]:
    """A store with the default HISTORY_LIMIT (50), on SQLite (group commit) and PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'default.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = await Store.open(url, history_limit=Settings().history_limit)
    try:
        yield store
    finally:
        await store.close()


async def test_a_resend_whose_original_was_trimmed_is_acked_not_stored_again(
    store_at_default_limit: Store,
) -> None:
    """Issue 18, defect 1: the room moved on by more than HISTORY_LIMIT messages before the
    resend; the client_id is still known, so the resend gets the original's seq."""
    store = store_at_default_limit
    limit = store.history_limit
    alice, bob = await make_user(store, "alice"), await make_user(store, "bob")
    original, is_new = await store.append_message("general", alice, "lost ack", "c-lost")
    assert is_new and original.seq == 1
    for i in range(limit + 5):
        await store.append_message("general", bob, f"b{i}", f"b-{i}")
    kept, at = await store.history("general", None)
    complete = at.complete
    last = at.seq
    assert 1 not in [m.seq for m in kept] and not complete and last == limit + 6
    # Alone, as the awaited path (and PostgreSQL) stores it...
    again, again_new = await store.append_message("general", alice, "lost ack", "c-lost")
    assert not again_new and again.seq == 1 and again.client_id == "c-lost"
    assert again.text == "lost ack" and again.user == "alice"
    # ...and in one group-commit batch with new messages (SQLite).
    burst = await asyncio.gather(
        store.append_message("general", bob, "new one", "b-new"),
        store.append_message("general", alice, "lost ack", "c-lost"),
        store.append_message("general", bob, "new two", "b-new-2"),
    )
    assert [(m.seq, new) for m, new in burst] == [(last + 1, True), (1, False), (last + 2, True)]
    _, at = await store.history("general", None)
    after = at.seq
    assert after == last + 2  # nothing stored twice


async def test_remembered_client_ids_are_forgotten_by_age_and_beyond_the_count(
    store_at_default_limit: Store,
) -> None:
    store = store_at_default_limit
    alice, bob = await make_user(store, "alice"), await make_user(store, "bob")
    for i in range(6):
        await store.append_message("general", alice, f"a{i}", f"a-{i}")
        await asyncio.sleep(0.002)  # distinct timestamps: "newest" is well defined
    await store.append_message("general", bob, "b", "b-0")
    # Keep alice's newest 4; bob is under the count.
    forgotten = await store.forget_client_ids(older_than=0, keep=4, active_since=0)
    assert forgotten == 2
    async with store.engine.connect() as conn:
        left = sorted((await conn.execute(select(client_ids.c.client_id))).scalars())
    assert left == ["a-2", "a-3", "a-4", "a-5", "b-0"]
    # By age: everything stored before now.
    assert await store.forget_client_ids(older_than=now_ms() + 1, keep=4, active_since=0) == 5


async def test_appends_at_the_same_time_are_stored_as_if_one_by_one(store: Store) -> None:
    """On SQLite they share one group commit (one seq bump and one trim per room, one insert):
    still gap-free seqs per room, a resend inside the same batch stored once, the history limit
    kept, and a bad room failing alone."""
    alice = await make_user(store, "alice")
    await store.create_room("other", creator_id=None)
    rooms_sent = ["other" if i % 3 == 0 else "general" for i in range(12)]
    calls = [store.append_message(r, alice, f"m{i}", f"c{i}") for i, r in enumerate(rooms_sent)]
    # Resent at once, into the room that keeps all of its messages.
    calls.append(store.append_message("other", alice, "m0", "c0"))
    calls.append(store.append_message("nowhere", alice, "lost", None))
    *outcomes, lost = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(lost, NoSuchRoom)
    results = [r for r in outcomes if isinstance(r, tuple)]
    assert len(results) == 13, [r for r in outcomes if not isinstance(r, tuple)]
    (original, original_new), (resend, resend_new) = results[0], results[-1]
    # Stored once; exactly one of the two is new (on PostgreSQL the resend may win the race).
    assert resend == original and original_new != resend_new
    stored = [m for m, _ in results[:-1]]
    for room, count in (("general", 8), ("other", 4)):
        seqs = [m.seq for m in stored if m.room == room]
        if store.is_sqlite:  # one batch: seq order is the order they were sent in
            assert seqs == list(range(1, count + 1))
        assert sorted(seqs) == list(range(1, count + 1))
    kept, at = await store.history("general", None)
    complete = at.complete
    last = at.seq
    assert last == 8 and not complete
    in_general = sorted((m for m in stored if m.room == "general"), key=lambda m: m.seq)
    assert [m.text for m in kept] == [m.text for m in in_general[-LIMIT:]]


async def test_read_markers_only_move_forward_and_count_unread(store: Store) -> None:
    alice, bob = await make_user(store, "alice"), await make_user(store, "bob")
    for i in range(4):
        await store.append_message("general", alice, f"m{i}", None)
    assert await store.mark_read("general", bob, 2) == 2
    assert await store.mark_read("general", bob, 1) == 2  # never back
    assert await store.mark_read("general", bob, 99) == 4  # never past the end
    await store.mark_read("general", alice, 3)
    assert await store.read_markers("general") == {"bob": 4, "alice": 3}
    await store.append_message("general", alice, "one more", None)
    assert await store.unread_counts(bob) == {"general": 1}


async def test_concurrent_writers_on_postgresql_get_gap_free_unique_seqs(pg_url: str) -> None:
    """Four stores, each with its own connection pool (as four nodes would have), write to one
    room at the same moment: every seq from 1 to N is taken exactly once."""
    writers, each = 4, 25
    # Nodes starting together: the migrations take turns behind the advisory lock.
    stores = await asyncio.gather(*(Store.open(pg_url, history_limit=1000) for _ in range(writers)))
    try:
        users = [await make_user(stores[0], f"writer{i}") for i in range(writers)]

        async def write(store: Store, user: User) -> list[int]:
            return [
                (await store.append_message("general", user, f"{user.username} {i}", None))[0].seq
                for i in range(each)
            ]

        results = await asyncio.gather(*(write(s, u) for s, u in zip(stores, users, strict=True)))
        got = sorted(seq for seqs in results for seq in seqs)
        assert got == list(range(1, writers * each + 1))
        for seqs in results:
            assert seqs == sorted(seqs)  # each writer's own messages keep their order
        async with stores[0].engine.connect() as conn:
            stored = list((await conn.execute(select(messages.c.seq))).scalars())
            last_seq = (await conn.execute(select(rooms.c.last_seq))).scalar_one()
        assert sorted(stored) == got and last_seq == writers * each
    finally:
        for store in stores:
            await store.close()


async def test_migration_0004_remembers_the_client_ids_already_in_the_history(
    tmp_path: Path,
) -> None:
    """A database from before the client_id memory: the kept messages' client_ids are known at
    once, so their resends are recognised after the next trim too."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0002"))
    await engine.dispose()
    db = sqlite3.connect(tmp_path / "old.sqlite3")
    with db:
        db.execute("INSERT INTO users (id, username, password_hash, is_admin, created_at) "
                   "VALUES (1, 'old', 'hash', 1, 0)")  # fmt: skip
        db.execute("INSERT INTO rooms (id, name, last_seq, created_at) VALUES (1, 'general', 1, 0)")
        db.execute("INSERT INTO messages (room_id, seq, user_id, text, ts, client_id) "
                   "VALUES (1, 1, 1, 'from before', 5, 'c-old')")  # fmt: skip
    db.close()
    store = await Store.open(url, history_limit=1)
    try:
        old = await store.user_by_name("old")
        assert old is not None
        await store.append_message("general", old, "trims the old one", None)
        again, is_new = await store.append_message("general", old, "from before", "c-old")
        assert (again.seq, is_new) == (1, False)
    finally:
        await store.close()
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0002"))
    await engine.dispose()


async def test_history_pages_go_back_to_what_is_kept(store: Store) -> None:
    alice = await make_user(store, "alice")
    for i in range(1, 9):  # HISTORY_LIMIT is 5 here: seq 4..8 kept
        await store.append_message("general", alice, f"m{i}", None)
    newest = await store.history_page("general", None, 3)
    assert [m.seq for m in newest.messages] == [6, 7, 8] and newest.last_seq == 8
    assert newest.older and not newest.forgotten and newest.oldest_seq == 6
    rest = await store.history_page("general", newest.oldest_seq, 3)
    assert [m.seq for m in rest.messages] == [4, 5] and not rest.older and rest.forgotten
    await store.create_room("quiet", creator_id=alice.id)
    quiet = await store.history_page("quiet", None, 3)
    assert quiet.messages == [] and not quiet.older and not quiet.forgotten
