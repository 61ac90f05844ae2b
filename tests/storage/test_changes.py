"""Changes to stored messages (edit, deletion, reactions) as events of their room, on SQLite and
PostgreSQL: each takes the room's next seq, `since` finds the messages changed after it, the
history limit counts messages, and reactions go with their trimmed message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from chat.errors import Forbidden, NoSuchMessage
from chat.models import User
from chat.storage.schema import reactions, rooms
from chat.storage.store import Store
from tests.storage.backends import BACKENDS, store_on


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with store_on(request, tmp_path, history_limit=3) as store:
        yield store


async def users(store: Store) -> tuple[User, User]:
    admin = await store.create_user("alice", "x")
    bob = await store.create_user("bob", "x")
    return admin, bob


async def test_every_change_takes_the_next_seq_and_since_finds_it(store: Store) -> None:
    alice, bob = await users(store)
    first, _ = await store.append_message("general", alice, "hello", None)
    second, _ = await store.append_message("general", bob, "hi", None)
    edited = await store.edit_message("general", first.seq, alice, "hello there")
    assert edited.changed == 3 and edited.text == "hello there" and edited.edited_at
    reacted = await store.react("general", second.seq, alice, "👍", True)
    assert reacted is not None and reacted.changed == 4
    assert [(r.emoji, r.users) for r in reacted.reactions] == [("👍", ("alice",))]
    # The same reaction again changes nothing: no event, no seq.
    assert await store.react("general", second.seq, alice, "👍", True) is None
    _, gone = await store.remove_message("general", second.seq, bob)
    assert gone.deleted and gone.changed == 5 and gone.text == "" and gone.reactions == ()
    third, _ = await store.append_message("general", bob, "new", None)
    assert third.seq == 6

    messages, position = await store.history("general", 2)
    assert position.seq == 6 and position.complete
    state = {m.seq: m for m in messages}
    assert state[1].text == "hello there" and state[1].changed == 3
    assert state[2].deleted and state[6].text == "new"
    # A fresh join does not show the deleted message; the edit is there.
    fresh, _ = await store.history("general", None)
    assert [(m.seq, m.text) for m in fresh] == [(1, "hello there"), (6, "new")]


async def test_refusals_roll_the_seq_back(store: Store) -> None:
    alice, bob = await users(store)
    mine, _ = await store.append_message("general", bob, "bob's", None)
    with pytest.raises(Forbidden):
        await store.edit_message("general", mine.seq, alice, "not yours")  # admins neither
    theirs, _ = await store.append_message("general", alice, "alice's", None)
    with pytest.raises(Forbidden):
        await store.remove_message("general", theirs.seq, bob)
    with pytest.raises(NoSuchMessage):
        await store.edit_message("general", 99, bob, "nothing there")
    await store.remove_message("general", mine.seq, alice)  # an admin deletes anyone's
    with pytest.raises(NoSuchMessage):
        await store.edit_message("general", mine.seq, bob, "too late")
    with pytest.raises(NoSuchMessage):
        await store.react("general", mine.seq, bob, "👍", True)
    room = await store.room_by_name("general")
    assert room is not None and room.last_seq == 3  # two messages, one deletion


async def test_the_history_limit_counts_messages_and_reactions_go_with_them(
    store: Store,
) -> None:
    alice, bob = await users(store)
    kept = [(await store.append_message("general", alice, f"m{i}", None))[0] for i in range(3)]
    await store.react("general", kept[0].seq, bob, "🎉", True)
    for i in range(5):  # edits do not push a message out
        await store.edit_message("general", kept[1].seq, alice, f"m1 v{i}")
    fresh, _ = await store.history("general", None)
    assert [m.text for m in fresh] == ["m0", "m1 v4", "m2"]
    await store.append_message("general", alice, "m3", None)
    fresh, _ = await store.history("general", None)
    assert [m.text for m in fresh] == ["m1 v4", "m2", "m3"]
    async with store.engine.connect() as conn:
        left = (await conn.execute(select(func.count()).select_from(reactions))).scalar_one()
    assert left == 0


async def test_a_reply_quotes_its_original_until_it_is_deleted_or_trimmed(store: Store) -> None:
    alice, bob = await users(store)
    original, _ = await store.append_message("general", alice, "the question", None)
    reply, _ = await store.append_message("general", bob, "answer", None, reply_to=original.seq)
    assert reply.reply_to == original.seq and reply.reply is not None
    assert (reply.reply.user, reply.reply.text) == ("alice", "the question")
    await store.remove_message("general", original.seq, alice)
    (shown,), _ = await store.history("general", None)
    assert shown.seq == reply.seq and shown.reply is not None and shown.reply.deleted

    question, _ = await store.append_message("general", alice, "another question", None)
    later, _ = await store.append_message("general", bob, "later", None, reply_to=question.seq)
    for text in ("x", "y"):  # the question leaves the kept history; the reply stays
        await store.append_message("general", alice, text, None)
    page = await store.history_page("general", None, 10)
    [kept] = [m for m in page.messages if m.seq == later.seq]
    assert kept.reply_to == question.seq and kept.reply is None  # "no longer kept"
    with pytest.raises(NoSuchMessage):  # trimmed: nothing to reply to
        await store.append_message("general", bob, "to it", None, reply_to=question.seq)


async def test_a_reply_sent_again_is_acked_with_its_quote(store: Store) -> None:
    alice, bob = await users(store)
    original, _ = await store.append_message("general", alice, "q", None)
    first, new = await store.append_message("general", bob, "a", "c-1", reply_to=original.seq)
    again, stored = await store.append_message("general", bob, "a", "c-1", reply_to=original.seq)
    assert new and not stored and again.seq == first.seq
    assert again.reply_to == original.seq and again.reply == first.reply is not None


@pytest.mark.postgres
async def test_seq_stays_gap_free_with_edits_and_reactions_from_several_writers(
    pg_url: str,
) -> None:
    """Four stores (four nodes' pools) send, edit and react in one room at once: every seq from
    1 to N is taken exactly once, by a message or an event."""
    writers, each = 4, 10
    stores = await asyncio.gather(*(Store.open(pg_url, history_limit=1000) for _ in range(writers)))
    try:
        users = [await stores[0].create_user(f"writer{i}", "x") for i in range(writers)]

        async def write(store: Store, user: User) -> list[int]:
            seqs = []
            for i in range(each):
                message, _ = await store.append_message("general", user, f"{i}", None)
                seqs.append(message.seq)
                edited = await store.edit_message("general", message.seq, user, f"{i}!")
                assert edited.changed is not None
                seqs.append(edited.changed)
                reacted = await store.react("general", message.seq, user, "👍", True)
                assert reacted is not None and reacted.changed is not None
                seqs.append(reacted.changed)
            return seqs

        results = await asyncio.gather(*(write(s, u) for s, u in zip(stores, users, strict=True)))
        got = sorted(seq for seqs in results for seq in seqs)
        assert got == list(range(1, writers * each * 3 + 1))
        async with stores[0].engine.connect() as conn:
            last_seq = (await conn.execute(select(rooms.c.last_seq))).scalar_one()
        assert last_seq == writers * each * 3
    finally:
        for store in stores:
            await store.close()
