"""The store's side of notifications on SQLite and PostgreSQL: levels, the names a mention may
reach, and mention counts that clear with the read marker and go with their message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat.storage.store import Store
from tests.storage.backends import BACKENDS, store_on


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with store_on(request, tmp_path, history_limit=3) as store:
        yield store


async def test_levels_names_and_mention_counts(store: Store) -> None:
    alice = await store.create_user("alice", "x")
    bob = await store.create_user("Bob_1", "x")
    await store.create_user("bobby", "x")
    general = await store.room_by_name("general")
    assert general is not None

    assert await store.notification_level(general, bob) is None
    await store.set_notification_level(general, bob, "all")
    await store.set_notification_level(general, bob, "nothing")
    assert await store.notification_level(general, bob) == "nothing"
    assert await store.room_levels(general.id) == {bob.id: "nothing"}

    assert await store.users_named({"bob_1", "ALICE", "nobody"}) == {
        "bob_1": bob.id,
        "alice": alice.id,
    }
    assert await store.names_for(general, "BOB", 8) == ["Bob_1", "bobby"]
    assert await store.names_for(general, "bob_", 8) == ["Bob_1"]  # "_" is no wildcard
    secret = await store.create_room("secret", creator_id=alice.id, private=True)
    assert await store.names_for(secret, "", 8) == ["alice"]
    assert await store.member_ids(secret.id) == {alice.id}

    first, _ = await store.append_message("general", alice, "@bob_1 one", None)
    second, _ = await store.append_message("general", alice, "@bob_1 two", None)
    for m in (first, second):
        await store.add_mentions(general.id, m.seq, [bob.id])
    await store.add_mentions(general.id, 999, [bob.id])  # no such message: nothing counted
    assert await store.mention_counts(bob) == {"general": 2}
    await store.mark_read("general", bob, first.seq)
    assert await store.mention_counts(bob) == {"general": 1}
    # Trimmed with their message (HISTORY_LIMIT 3 here).
    for text in ("a", "b", "c"):
        await store.append_message("general", alice, text, None)
    assert await store.mention_counts(bob) == {}
